"""Many jobs at once on the platform: a bounded pool, a visible queue, and four users at the same time.

Real components only: SeaweedFS, the platform on waitress, NVFlare's simulator for every job.
"""

from __future__ import annotations

import threading
import traceback
from collections import Counter

import fl_models
import pytest
import requests
import torch

from resontech_nb import api
from resontech_nb.capture import capture
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import JobNotFoundError
from resontech_nb.platform import PlatformServer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

BUCKET = "load-tests"
USERS = {f"user{i}@example.com": f"user{i}-Secret-{i}{i}{i}{i}" for i in range(1, 5)}
JOBS_PER_USER = 5  # 4 users x 5 = 20 jobs submitted at once
MAX_RUNNING = 2


@pytest.fixture
def platform(s3, tmp_path):
    server = PlatformServer(
        tmp_path / "platform", s3_endpoint=s3.endpoint_url, bucket=BUCKET, max_running=MAX_RUNNING
    ).start()
    for email, password in USERS.items():
        server.add_user(email, password)
    yield server
    for job in server.store.jobs():
        server.runner.abort(job)
    server.stop()


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=1, img_size=8, seed=3)


def config(platform: PlatformServer, s3, email: str) -> ResonTechConfig:
    return ResonTechConfig(
        base_url=platform.url, email=email, password=USERS[email], s3_bucket=BUCKET, s3_endpoint_url=s3.endpoint_url
    )


def submit_one(platform, s3, shard, email: str, name: str, rounds: int = 1):
    federation = FederationConfig(num_rounds=rounds, min_clients=1, wait_time_after_min_received=0, job_name=name)
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    return api.submit(spec, shard, TrainingConfig(img_size=8), federation, "resontech", config(platform, s3, email))


def test_four_users_submit_twenty_jobs_at_once(platform, s3, shard):
    submitted: dict[str, list] = {email: [] for email in USERS}
    errors: list[str] = []
    start = threading.Barrier(len(USERS))

    def user(email: str) -> None:
        try:
            start.wait()
            for n in range(JOBS_PER_USER):
                submitted[email].append(submit_one(platform, s3, shard, email, f"{email.split('@')[0]}-{n}"))
        except BaseException:  # noqa: BLE001 - reported below, with where it came from
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=user, args=(email,)) for email in USERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors

    # the pool is bounded: while the first jobs run, the others wait QUEUED, in order, visibly
    statuses = Counter(job.status for jobs in submitted.values() for job in jobs)
    assert statuses["RUNNING"] + statuses["SUBMITTED"] <= MAX_RUNNING, statuses
    assert statuses["QUEUED"] >= 1, statuses
    queued = [j for jobs in submitted.values() for j in jobs if j.status == "QUEUED"]
    position = requests.get(
        f"{platform.url}/api/v1/jobs/{queued[0].id}",
        headers={"Authorization": f"Bearer {queued[0].client._valid_token()}"},
        timeout=10,
    ).json()["queue_position"]
    assert isinstance(position, int) and position >= 1

    expected = torch.arange(6, dtype=torch.float32).reshape(2, 3) + 1.0  # one round: site-1 adds 1
    for email, jobs in submitted.items():
        for job in jobs:
            assert job.wait(timeout=1500) == "FINISHED", (job.id, job.error)
            assert torch.equal(job.result()["w"], expected), job.id
        # each user sees exactly their own jobs, none lost, none twice
        listed = [j["id"] for j in jobs[0].client.list_jobs()]
        assert sorted(listed) == sorted(j.id for j in jobs), email
    all_ids = [job.id for job in platform.store.jobs()]
    assert len(all_ids) == len(USERS) * JOBS_PER_USER == len(set(all_ids))
    assert Counter(job.owner for job in platform.store.jobs()) == {email: JOBS_PER_USER for email in USERS}


def test_a_queued_job_can_be_aborted_and_never_starts(platform, s3, shard):
    email = next(iter(USERS))
    running = [submit_one(platform, s3, shard, email, f"long-{n}", rounds=200) for n in range(MAX_RUNNING)]
    waiting = submit_one(platform, s3, shard, email, "waiting")
    assert waiting.status == "QUEUED"
    waiting.abort()
    for job in running:
        job.abort()
    assert waiting.status == "ABORTED"
    assert not (platform.data_dir / "nvflare" / "jobs" / waiting.id).exists()  # it never reached NVFlare


def test_evaluation_and_best_model_through_the_api(platform, s3, shard):
    job = submit_one(platform, s3, shard, next(iter(USERS)), "evaluated")
    assert job.wait(timeout=600) == "FINISHED", job.error
    assert job.best_round is None and job.cross_site == {}  # no select_metric, no cross-site evaluation
    assert torch.equal(job.result("final")["b"], torch.ones(3) + 1.0)
    with pytest.raises(JobNotFoundError, match="select_metric"):
        job.result("best")
