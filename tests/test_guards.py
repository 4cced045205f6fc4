"""Guards with NVFlare really running: a wrong-shaped, NaN or missing update fails that site's round by
name and never reaches the global model; a hung site is cut off by train_timeout; a job whose simulator
dies or hangs still ends, FAILED with a message that says why.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import fl_components
import fl_models
import psutil
import pytest
import torch
from fl_models import expected_after

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=3, img_size=16, seed=1)


def simulator_pid(job) -> int:
    return json.loads((job.state_dir / "state.json").read_text(encoding="utf-8"))["pid"]


def simulator_running(job) -> bool:
    try:
        return psutil.Process(simulator_pid(job)).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run(spec, shards, **federation):
    # past min_clients the round waits for the others (they answer at once), so every site is heard
    federation.setdefault("wait_time_after_min_received", 30)
    return submit(spec, shards, training=TrainingConfig(img_size=16), federation=FederationConfig(**federation))


def assert_weights(result: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert torch.allclose(result[name].double(), value, atol=1e-5), (name, result[name], value)


def test_wrong_shapes_and_nan_fail_their_sites_by_name_and_stay_out_of_the_model(three_shards):
    # site-2 returns a bias of the wrong shape every round; site-3 diverges to NaN in round 2
    job = run(capture(fl_models.DeltaNet, fl_models.bad_update_train), three_shards, num_rounds=3, min_clients=1,
              job_name="badupdate")
    assert job.wait(timeout=300) == "FINISHED", job.error
    for record in job.rounds:
        site2 = record.clients["site-2"]
        assert site2.status == "failed"
        assert site2.error == "weights['b'] has shape (5,), the model's is (3,)"
    second = job.rounds[1]
    assert second.clients["site-3"].status == "failed"
    assert second.clients["site-3"].error.startswith("weights['w'] holds NaN")
    assert [r.participants for r in job.rounds] == [["site-1", "site-3"], ["site-1"], ["site-1", "site-3"]]
    result = job.result()
    assert all(torch.isfinite(t).all() for t in result.values())
    failed = {0: {"site-2"}, 1: {"site-2", "site-3"}, 2: {"site-2"}}
    assert_weights(result, expected_after(3, fl_models.SAMPLES, failed=failed))
    assert all(math.isfinite(r.global_loss) for r in job.rounds)
    assert any(note.startswith("site-2 failed rounds 1-3 (weights['b'] has shape (5,)") for note in job.notes)
    assert any(note.startswith("site-3 failed round 2 (weights['w'] holds NaN") for note in job.notes)


def test_the_server_rejects_a_bad_update_from_a_hand_written_executor(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    job = submit(
        spec,
        three_shards[:2],
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=1, min_clients=1, wait_time_after_min_received=0, job_name="srvguard"),
        executor=fl_components.WrongShapeExecutor,
    )
    assert job.wait(timeout=300) == "FAILED"
    assert "update rejected by the server: weights['b'] has shape (2,), the model's is (3,)" in job.error
    record = job.rounds[0]
    assert {c.status for c in record.clients.values()} == {"failed"}


def test_a_hung_site_is_cut_off_by_train_timeout_and_the_job_goes_on(three_shards):
    job = run(capture(fl_models.DeltaNet, fl_models.hanging_train), three_shards, num_rounds=3, min_clients=2,
              train_timeout=10, job_name="hung")
    assert job.wait(timeout=300) == "FINISHED", job.error
    second = job.rounds[1]
    assert second.clients["site-2"].status == "failed"
    assert second.clients["site-2"].error == "no answer within train_timeout=10 s"
    assert second.participants == ["site-1", "site-3"]
    assert job.rounds[0].participants == ["site-1", "site-2", "site-3"]
    assert job.result()["w"].shape == (2, 3)


def test_too_few_answers_end_the_job_failed_naming_the_silent_site(three_shards):
    job = run(capture(fl_models.DeltaNet, fl_models.hanging_train), three_shards[:2], num_rounds=3, min_clients=2,
              train_timeout=10, job_name="toofew")
    assert job.wait(timeout=300) == "FAILED"
    assert job.error == (
        "round 2: only 1 of min_clients=2 site(s) answered (site-2: no answer within train_timeout=10 s)"
    )
    assert len(job.rounds) == 2 and job.rounds[1].clients["site-2"].status == "failed"
    assert not simulator_running(job)


def test_a_simulator_killed_from_outside_ends_failed(three_shards):
    job = run(capture(fl_models.DeltaNet, fl_models.slow_train), three_shards[:2], num_rounds=20, min_clients=2,
              job_name="killed")
    deadline = time.monotonic() + 120
    while not job.rounds and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.rounds, "no round finished"
    os.killpg(simulator_pid(job), signal.SIGKILL)
    assert job.wait(timeout=60) == "FAILED"
    assert "stopped after" in job.error and "of 20 round(s)" in job.error
