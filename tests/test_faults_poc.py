"""A site lost mid-job on a real NVFlare deployment (POC: server and two clients as processes).

site-2's client processes are killed with SIGKILL while the job runs; with min_clients=1 the job goes
on with site-1, every round completes, and the job is FINISHED with its result and a note naming
the lost site (NVFlare itself flags such a job FINISHED:ABNORMAL).
"""

from __future__ import annotations

import signal
import time

import fl_models
import pytest
import torch

from resontech_nb.api import build_job
from resontech_nb.capture import capture
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.shards import validate_shards
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.targets.base import BuiltJob
from resontech_nb.targets.nvflare.poc import PocDeployment
from resontech_nb.targets.nvflare.target import NVFlareTarget
from resontech_nb.targets.processes import processes_using

pytestmark = pytest.mark.slow
TRAINING = TrainingConfig(img_size=16)
ROUNDS = 6


@pytest.fixture(scope="module")
def poc(tmp_path_factory):
    deployment = PocDeployment(tmp_path_factory.mktemp("poc-faults") / "workspace", n_clients=2)
    deployment.start()
    yield deployment
    deployment.stop()


def test_a_client_killed_mid_job_is_named_and_the_job_finishes(poc, tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=3)
    spec = capture(fl_models.DeltaNet, fl_models.slow_train)
    shard_set = validate_shards(shards, TRAINING)
    federation = FederationConfig(
        num_rounds=ROUNDS, min_clients=1, wait_time_after_min_received=1, heart_beat_timeout=10, job_name="lost"
    )
    job_dir = build_job(spec, shard_set, TRAINING, federation, out=tmp_path / "job")
    target = NVFlareTarget(ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit)), home=tmp_path / "home")
    try:
        job = target.submit(BuiltJob(job_dir, dict(shard_set.shards), TRAINING, federation, spec.class_name))
        deadline = time.monotonic() + 180
        while not job.rounds and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.rounds and job.rounds[0].participants == ["site-1", "site-2"], job.rounds

        site2 = processes_using(poc.prod_dir / "site-2")
        assert site2, "site-2 runs as its own processes"
        for proc in site2:
            proc.send_signal(signal.SIGKILL)

        assert job.wait(timeout=300) == "FINISHED", (job.error, job.nvflare_status)
        records = job.rounds
        assert len(records) == ROUNDS
        assert all("site-1" in r.participants for r in records)
        assert records[-1].clients["site-2"].status in ("absent", "failed")
        assert any(note.startswith("site-2 ") for note in job.notes), job.notes
        result = job.result()
        assert torch.isfinite(result["w"]).all() and result["w"].shape == (2, 3)
    finally:
        target.close()


def test_a_dead_server_ends_the_job_failed_within_bounded_time(poc, tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=4)
    spec = capture(fl_models.DeltaNet, fl_models.slow_train)
    shard_set = validate_shards(shards, TRAINING)
    federation = FederationConfig(num_rounds=50, min_clients=1, wait_time_after_min_received=1, job_name="nosrv")
    job_dir = build_job(spec, shard_set, TRAINING, federation, out=tmp_path / "job")
    target = NVFlareTarget(
        ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit)), home=tmp_path / "home", connect_timeout=3
    )
    try:
        job = target.submit(BuiltJob(job_dir, dict(shard_set.shards), TRAINING, federation, spec.class_name))
        job.lost_contact_s = 15
        deadline = time.monotonic() + 180
        while not job.rounds and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.rounds, (job.status, job.error)
        for proc in processes_using(poc.server_dir):
            proc.send_signal(signal.SIGKILL)
        started = time.monotonic()
        assert job.wait(timeout=240) == "FAILED"
        assert "lost contact with the NVFlare server" in job.error
        print(f"FAILED {time.monotonic() - started:.0f} s after the server was killed")
    finally:
        target.close()
        for proc in poc.processes():  # the deployment is broken now: nothing to shut down in order
            proc.send_signal(signal.SIGKILL)
