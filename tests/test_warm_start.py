"""The local target's warm simulator process: the same results as a cold start, the submit-time environment,
abort, its end with its parent, and never under a launcher."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import fl_models
import psutil
import pytest
import torch
import torch.nn as nn

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.targets.local import warm
from resontech_nb.targets.local.target import Launch, LocalTarget
from resontech_nb.targets.processes import processes_using

pytestmark = pytest.mark.slow

PROBE = "RT_TEST_WARM_PROBE"


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def probe_train(payload):
    """Reports the value of RT_TEST_WARM_PROBE in the site's environment, slowly (a job to abort)."""
    time.sleep(1.5)
    weights = {name: t + 1.0 for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 1, "metrics": {"loss": 1.0, "probe": float(os.environ.get(PROBE, "-1"))}}


def idle_pid() -> int:
    assert warm.warm_up()
    return warm._idle.proc.pid


def gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def no_idle_warm_process():
    yield
    warm.shutdown()


def test_a_job_run_warm_gives_the_same_weights_and_losses_as_a_cold_start(tmp_path, monkeypatch):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=5)

    def run(mode: str):
        return submit(
            capture(TinyCNN),
            shards,
            training=TrainingConfig(img_size=16, local_epochs=1, batch_size=8, learning_rate=0.05),
            federation=FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name=mode),
        )

    monkeypatch.setenv(warm.ENV, "0")
    cold = run("cold")
    assert warm._idle is None  # off: none started for the next job
    assert cold.wait(timeout=300) == "FINISHED", cold.error
    monkeypatch.delenv(warm.ENV)
    pid = idle_pid()
    hot = run("warm")
    assert hot.pid == pid  # the warm process runs the job, and is the pid the target watches
    assert warm._idle is not None and warm._idle.proc.pid != pid  # the next one is on its way
    assert hot.wait(timeout=300) == "FINISHED", hot.error
    assert processes_using(hot.workspace) == []
    assert [r.global_loss for r in hot.rounds] == [r.global_loss for r in cold.rounds]
    assert [{s: c.loss for s, c in r.clients.items()} for r in hot.rounds] == [
        {s: c.loss for s, c in r.clients.items()} for r in cold.rounds
    ]
    cold_weights, hot_weights = cold.result(), hot.result()
    assert cold_weights.keys() == hot_weights.keys()
    for name, tensor in cold_weights.items():
        assert torch.equal(tensor, hot_weights[name]), name  # bit for bit


def test_the_job_gets_the_environment_of_submit_time_and_abort_stops_it(tmp_path, monkeypatch):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=2)
    monkeypatch.setenv(PROBE, "1")
    monkeypatch.setenv("RESONTECH_PASSWORD", "not-for-the-job")
    pid = idle_pid()  # started with the probe at 1 and a password in this process's environment
    assert "RESONTECH_PASSWORD" not in psutil.Process(pid).environ()
    monkeypatch.setenv(PROBE, "7")
    job = submit(
        capture(fl_models.DeltaNet, probe_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=50, min_clients=2, wait_time_after_min_received=0, job_name="probe"),
    )
    assert job.pid == pid
    deadline = time.monotonic() + 180
    while not job.rounds and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.rounds, "the job never finished a round"
    assert {site: c.metrics.get("probe") for site, c in job.rounds[0].clients.items()} == {"site-1": 7.0, "site-2": 7.0}
    running = processes_using(job.workspace)  # the job's command line, as a cold start shows it
    assert pid in [proc.pid for proc in running] and len(running) >= 3  # the simulator, the server, the sites
    assert all("RESONTECH_PASSWORD" not in proc.environ() for proc in running)
    job.abort()
    assert job.status == "ABORTED"
    assert gone(pid)
    assert processes_using(job.workspace) == []


def test_an_idle_warm_process_ends_when_the_process_that_started_it_dies(tmp_path):
    code = (
        "import sys, time\n"
        "from resontech_nb.targets.local import warm\n"
        "warm.warm_up()\n"
        "print(warm._idle.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(parent.stdout.readline())
        assert psutil.Process(pid).cmdline()[1:3] == ["-m", warm.MODULE]
        parent.kill()  # no atexit: only the closed pipe and the parent's absence tell it
        parent.wait(timeout=10)
        assert gone(pid, timeout=60)
    finally:
        parent.kill()
        parent.stdout.close()


def test_a_target_with_a_launcher_starts_cold_and_leaves_the_warm_process_idle(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=3)
    pid = idle_pid()
    launched = []

    def launcher(command, env, state_dir):
        launched.append(command)
        return Launch([sys.executable, "-c", "pass"], env)  # a sandbox stand-in that runs nothing

    from resontech_nb.api import _build
    from resontech_nb.targets import BuiltJob

    training, federation = TrainingConfig(img_size=16), FederationConfig(num_rounds=1, job_name="launched")
    from resontech_nb.data.shards import validate_shards

    shard_set = validate_shards(shards, training)
    job_dir = _build(capture(fl_models.DeltaNet, fl_models.delta_train), shard_set, training, federation,
                     tmp_path / "job", None, None)  # fmt: skip
    built = BuiltJob(job_dir, dict(shard_set.shards), training, federation, "DeltaNet")
    job = LocalTarget(home=tmp_path / "home", launcher=launcher).submit(built)
    assert launched and job.pid != pid
    assert warm._idle is not None and warm._idle.proc.pid == pid and warm._idle.proc.poll() is None
    assert job.wait(timeout=60) == "FAILED"  # it ran nothing


def test_warm_up_returns_at_once_without_importing_torch_here():
    code = (
        "import sys, resontech_nb as rt\n"
        "from resontech_nb.targets.local import warm\n"
        "rt.warm_up()\n"
        "print(sorted({'torch', 'nvflare'} & set(sys.modules)), warm._idle.proc.pid, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded, pid = done.stdout.rsplit(" ", 1)
    assert loaded == "[]"
    assert gone(int(pid))  # stopped at the interpreter's exit
