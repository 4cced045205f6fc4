"""The main job: a captured model trains federated in NVFlare's simulator; weights come back.

The arithmetic is hello-numpy-sag's, weighted: each site adds its number to every weight and
reports its own sample count; FedAvg must land exactly on the sample-weighted average.
"""

from __future__ import annotations

import fl_models
import pytest
import torch
from fl_models import expected_after

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.dashboard import render_text, take_snapshot
from resontech_nb.dashboard.snapshot import CELL_FAILED, CELL_TOOK_PART
from resontech_nb.jobcode.rt_aggregator import RTWeightedAggregator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=3, img_size=16, seed=1)


def test_weighted_fedavg_is_exact(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    job = submit(
        spec,
        three_shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=3, min_clients=3, wait_time_after_min_received=0, job_name="fedavg"),
    )
    assert job.wait(timeout=300) == "FINISHED", job.error
    result = job.result()
    expected = expected_after(3, fl_models.SAMPLES)
    # 2.5 per round: the weighted mean of 1, 2, 3 with weights 10, 20, 50 (the plain mean would be 2.0).
    for name, value in expected.items():
        assert torch.equal(result[name], value.float()), (name, result[name], value)
    assert [r.round for r in job.rounds] == [0, 1, 2]
    last = job.rounds[-1]
    assert {s: c.samples for s, c in last.clients.items()} == fl_models.SAMPLES
    assert all(c.took_part for c in last.clients.values())
    assert last.global_loss == pytest.approx((10 * 1 + 20 * 2 + 50 * 3) / 80)
    # both ways the weights (small: inside the message, rt_arrays.INLINE_BYTES) never took NVFlare's zipped arrays
    for side in ("server", "site-1", "site-3"):
        log = "\n".join(p.read_text() for p in job.workspace.glob(f"{side}/**/log.txt"))
        assert "ArrayDownloadable" not in log, side
    # from round 2 on, the sum goes into the buffers of round 0's model, which nothing refers to any more
    server_log = "\n".join(p.read_text() for p in job.workspace.glob("server/**/log.txt"))
    assert f"{RTWeightedAggregator.REUSE_NOTE}: " in server_log


def test_a_failed_site_does_not_stop_the_job(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.flaky_train)
    job = submit(
        spec,
        three_shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=3, min_clients=2, wait_time_after_min_received=5, job_name="flaky"),
    )
    assert job.wait(timeout=300) == "FINISHED", job.error
    second = job.rounds[1]
    assert second.clients["site-2"].status == "failed"
    assert "disk full on site-2" in second.clients["site-2"].error
    assert second.participants == ["site-1", "site-3"]
    assert job.rounds[0].participants == job.rounds[2].participants == ["site-1", "site-2", "site-3"]
    expected = expected_after(3, fl_models.SAMPLES, failed={1: {"site-2"}})
    for name, value in expected.items():
        assert torch.allclose(job.result()[name].double(), value, atol=1e-5)

    # The dashboard's participation grid marks exactly that cell failed (the data behind the picture).
    clients, grid = take_snapshot(job).participation()
    assert clients == ["site-1", "site-2", "site-3"]
    assert grid == [[CELL_TOOK_PART] * 3, [CELL_TOOK_PART, CELL_FAILED, CELL_TOOK_PART], [CELL_TOOK_PART] * 3]
    assert "FAILED" in render_text(take_snapshot(job))
