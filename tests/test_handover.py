"""The local target's task hand-over (targets/local/handover.py) and small arrays inside the message (rt_arrays).

With the hand-over the server holds a site's request for a task until there is one, and its loops wake when an
answer arrives, instead of everyone polling; nothing else may change: the same global weights, bit for bit, and
the same records as with NVFlare's polling (``RESONTECH_HANDOVER=0``). The model here has one array above
``rt_arrays.INLINE_BYTES`` (it takes the raw download) and small ones (inside the message).
"""

from __future__ import annotations

import fl_models
import pytest
import torch

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.jobcode import rt_arrays
from resontech_nb.targets.local import handover, simulator

pytestmark = pytest.mark.slow


def run(shards, monkeypatch, handover_on: bool):
    monkeypatch.setenv(handover.ENV, "1" if handover_on else "0")
    monkeypatch.setenv(simulator.SHM_ENV, "0")  # the raw download, not shared memory (tests/test_shm_weights.py)
    torch.manual_seed(0)
    job = submit(
        capture(fl_models.WideNet),
        shards,
        initial_weights=fl_models.WideNet().state_dict(),  # the same initial model both times
        training=TrainingConfig(img_size=16, local_epochs=1, batch_size=8, learning_rate=0.01),
        federation=FederationConfig(num_rounds=3, min_clients=2, wait_time_after_min_received=0, job_name="handover"),
    )
    assert job.wait(timeout=400) == "FINISHED", job.error
    return job


def records(job) -> list[tuple]:
    return [(r.round, r.global_loss, r.metrics, r.validation, r.clients) for r in job.rounds]


def test_handing_tasks_over_changes_no_weight_and_no_record(tmp_path, monkeypatch):
    assert fl_models.WideNet().hidden.weight.numel() * 4 > rt_arrays.INLINE_BYTES
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=5)
    fast = run(shards, monkeypatch, handover_on=True)
    polled = run(shards, monkeypatch, handover_on=False)
    fast_weights, polled_weights = fast.result(), polled.result()
    assert fast_weights.keys() == polled_weights.keys()
    for name, value in fast_weights.items():
        assert torch.equal(value, polled_weights[name]), name
    assert records(fast) == records(polled) and len(fast.rounds) == 3
    torch.manual_seed(0)
    start = fl_models.WideNet().state_dict()  # training happened: the job is not comparing two untouched models
    assert not all(torch.equal(fast_weights[k], start[k]) for k in start)
    for job in (fast, polled):  # the big array took the raw download both ways
        for side in ("server", "site-1"):
            log = "\n".join(p.read_text() for p in job.workspace.glob(f"{side}/**/log.txt"))
            assert "RawArrays - INFO - object has been downloaded" in log, side


def test_the_hand_over_is_on_unless_switched_off():
    assert handover.enabled({}) and handover.enabled({handover.ENV: "1"})
    assert not handover.enabled({handover.ENV: "0"}) and not handover.enabled({handover.ENV: "off"})


def test_sites_taking_turns_on_a_pool_average_exactly(tmp_path, monkeypatch):
    """3 sites, 2 at once (NVFlare's -t): each turn a worker forked by the zygote (site_fork.SiteZygote)."""

    from resontech_nb.targets.local.simulator import SITES_AT_ONCE_ENV

    monkeypatch.setenv(SITES_AT_ONCE_ENV, "2")
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=3, img_size=16, seed=1)
    job = submit(
        capture(fl_models.DeltaNet, fl_models.delta_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=2, min_clients=3, wait_time_after_min_received=0, job_name="pool"),
    )
    assert job.wait(timeout=400) == "FINISHED", job.error
    result = job.result()
    for name, value in fl_models.expected_after(2, fl_models.SAMPLES).items():
        assert torch.equal(result[name], value.float()), name
    assert [sorted(r.participants) for r in job.rounds] == [sorted(fl_models.SAMPLES)] * 2
    logs = "\n".join(p.read_text() for p in job.workspace.glob("site-*/**/log.txt"))
    assert logs.count("ClientTaskWorker started to run") > 3  # the sites took turns: a worker per turn


def _names_received(build_ctx: dict, names: list[str]) -> list[str]:
    """NVFlare's runner starting sites from threads (``do_one_task``): each writes its site's name into the
    runner's build context, then sends the context to its worker; all write before any sends here."""
    import threading
    from multiprocessing import Pipe

    barrier = threading.Barrier(len(names))
    received: dict[str, str] = {}

    def site_thread(name: str) -> None:
        build_ctx["client_name"] = name
        barrier.wait()  # every other thread writes its name before this one sends
        ours, worker = Pipe()
        ours.send({"build_ctx": build_ctx})  # pickled, as NVFlare's conn.send to the site's worker
        received[name] = worker.recv()["build_ctx"]["client_name"]

    threads = [threading.Thread(target=site_thread, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [received[name] for name in names]


def test_each_site_thread_sends_its_own_name_to_its_worker(tmp_path):
    import argparse

    from nvflare.private.fed.app.simulator import simulator_runner

    names = [f"site-{i}" for i in range(1, 17)]
    assert len(set(_names_received({"x": 1}, names))) < len(names)  # NVFlare's shared dict: workers get others' names
    simulator.own_client_names(simulator_runner)
    runner = simulator_runner.SimulatorClientRunner(
        "", argparse.Namespace(workspace=str(tmp_path), set=[]), [], {}, argparse.Namespace(), {"x": 1}
    )
    assert isinstance(runner.build_ctx, simulator.ThreadClientContext)
    assert _names_received(runner.build_ctx, names) == names
    assert runner.build_ctx["x"] == 1 and "client_name" not in runner.build_ctx  # this thread set none
