"""The reference platform server: login, per-user isolation, idempotent submits, restarts, schema, secrets.

Everything is real: SeaweedFS's S3 server over HTTP, the platform on a loopback port (in a thread, or
as a subprocess for the restart test), and NVFlare's simulator running the jobs.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import torch

from resontech_nb.building import builder as jobbuilder
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.shards import validate_shards
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import AuthError, JobNotFoundError
from resontech_nb.job.handle import jobs_home
from resontech_nb.platform import PlatformServer
from resontech_nb.platform.loopback import ForwardingProxy
from resontech_nb.targets.base import BuiltJob
from resontech_nb.targets.local.target import LocalTarget
from resontech_nb.targets.nvflare.poc_project import free_port
from resontech_nb.targets.processes import processes_using
from resontech_nb.targets.resontech.rest import PlatformClient, token_cache_path
from resontech_nb.targets.resontech.target import ResonTechTarget

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

BUCKET = "platform-tests"
PASSWORDS = {"alice@example.com": "alice-Secret-7731", "bob@example.com": "bob-Secret-5512"}

MODEL_SOURCE = """
import time

import torch
import torch.nn as nn

SAMPLES = {"site-1": 10, "site-2": 20}
SECONDS_PER_ROUND = @SECONDS@


class DeltaNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))

    def forward(self, x):
        return x @ self.w


def fl_train_model(payload):
    time.sleep(SECONDS_PER_ROUND)
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}
"""


def expected_weights(rounds: int) -> torch.Tensor:
    delta = (10 * 1 + 20 * 2) / 30  # FedAvg weighted by the sample counts
    return torch.arange(6, dtype=torch.float64).reshape(2, 3) + rounds * delta


@pytest.fixture
def platform(s3, tmp_path):
    server = PlatformServer(tmp_path / "platform", s3_endpoint=s3.endpoint_url, bucket=BUCKET).start()
    for email, password in PASSWORDS.items():
        server.add_user(email, password)
    yield server
    stop_all_jobs(server)
    server.stop()


def stop_all_jobs(server: PlatformServer) -> None:
    server.runner.join(timeout=60)
    for job in server.store.jobs():
        server.runner.abort(job)


def config_for(base_url: str, email: str, s3, password: str | None = None) -> ResonTechConfig:
    return ResonTechConfig(
        base_url=base_url,
        email=email,
        password=PASSWORDS.get(email, "") if password is None else password,
    )  # all a notebook user holds: no bucket, no S3 keys


def built_job(tmp_path: Path, rounds: int, seconds_per_round: float = 0.0, name: str = "delta") -> BuiltJob:
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(6, 8), img_size=8, seed=5)
    training = TrainingConfig(img_size=8)
    federation = FederationConfig(num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name=name)
    spec = SimpleNamespace(
        source=MODEL_SOURCE.replace("@SECONDS@", repr(float(seconds_per_round))),
        class_name="DeltaNet",
        has_train_fn=True,
    )
    shard_set = validate_shards(shards, training)
    job_dir = jobbuilder.build_job(spec, shard_set, training, federation, out=tmp_path / "job")
    return BuiltJob(job_dir, dict(shard_set.shards), training, federation, "DeltaNet")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


# -- login ------------------------------------------------------------------------------


def test_login_gives_a_private_cached_token(platform, s3):
    client = PlatformClient(config_for(platform.url, "alice@example.com", s3))
    client.login()
    cache = token_cache_path(platform.url, "alice@example.com")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert PASSWORDS["alice@example.com"] not in cache.read_text()
    # a new client (a restarted kernel) without the password reuses the cached token
    again = PlatformClient(config_for(platform.url, "alice@example.com", s3, password=""))
    assert again.list_jobs() == []


@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_wrong_password_is_a_clear_error(platform, s3, email):
    client = PlatformClient(config_for(platform.url, email, s3, password="not-the-password"))
    with pytest.raises(AuthError) as info:
        client.login()
    message = str(info.value)
    assert message == f"wrong email or password for {platform.url}: check them and run %fl_login again"
    assert "not-the-password" not in message


def test_without_a_session_the_client_asks_for_fl_login(platform, s3):
    client = PlatformClient(config_for(platform.url, "bob@example.com", s3, password=""))
    with pytest.raises(AuthError, match="run %fl_login"):
        client.list_jobs()


def test_an_ended_session_logs_in_again_or_asks_for_fl_login(platform, s3):
    PlatformClient(config_for(platform.url, "alice@example.com", s3)).login()  # token cached on disk
    platform.add_user("alice@example.com", "alice-New-Secret-2")  # a password change ends every session
    # a client holding the (new) password finds the cached token refused, and logs in again by itself
    holding = PlatformClient(config_for(platform.url, "alice@example.com", s3, password="alice-New-Secret-2"))
    assert holding.list_jobs() == []
    # a client without the password (a restarted kernel) is told what to do
    platform.add_user("alice@example.com", PASSWORDS["alice@example.com"])
    without = PlatformClient(config_for(platform.url, "alice@example.com", s3, password=""))
    with pytest.raises(AuthError, match="session expired for .*: run %fl_login"):
        without.list_jobs()


# -- isolation and idempotency ------------------------------------------------------------


def test_users_see_and_abort_only_their_own_jobs(platform, s3, tmp_path):
    alice = ResonTechTarget(config_for(platform.url, "alice@example.com", s3))
    job = alice.submit(built_job(tmp_path, rounds=30, seconds_per_round=1.0, name="mine"))
    bob = PlatformClient(config_for(platform.url, "bob@example.com", s3))

    assert bob.list_jobs() == []
    with pytest.raises(JobNotFoundError):
        bob.status(job.id)
    with pytest.raises(JobNotFoundError):
        bob.abort(job.id)
    with pytest.raises(JobNotFoundError):
        bob.rounds(job.id)
    with pytest.raises(JobNotFoundError):
        bob.result(job.id)
    # a missing token is refused outright
    assert requests.get(f"{platform.url}/api/v1/jobs/{job.id}", timeout=10).status_code == 401

    wait_for(lambda: job.status == "RUNNING", 120, "alice's job to start")
    assert [j["id"] for j in alice.client().list_jobs()] == [job.id]
    workspace = str(platform.data_dir / "nvflare" / "jobs" / job.id)
    assert processes_using(workspace)
    job.abort()
    assert alice.attach(job.id).status == "ABORTED"
    wait_for(lambda: not processes_using(workspace), 30, "the simulator processes to end")


def test_a_retried_submit_makes_exactly_one_job(platform, s3, tmp_path):
    # A gateway that answers 503 to the first submit although the platform created the job:
    # the client retries, and the Idempotency-Key must turn the retry into the same job.
    def first_submit(method: str, path: str) -> bool:
        return method == "POST" and path == "/api/v1/jobs"

    with ForwardingProxy(platform.url, fail_after_forward=first_submit) as gateway:
        target = ResonTechTarget(config_for(gateway.url, "alice@example.com", s3))
        job = target.submit(built_job(tmp_path, rounds=1, name="once"))
        submits = [status for method, path, status in gateway.requests if (method, path) == ("POST", "/api/v1/jobs")]
        assert submits == [503, 200]  # the retry found the job created by the first attempt
        jobs = target.client().list_jobs()
        assert [j["id"] for j in jobs] == [job.id]
        assert len(platform.store.jobs()) == 1
        assert job.wait(timeout=240) == "FINISHED", job.error
        assert torch.allclose(job.result()["w"].double(), expected_weights(1))


# -- schema -------------------------------------------------------------------------------


def test_openapi_schema_describes_every_endpoint(platform):
    schema = requests.get(f"{platform.url}/openapi.json", timeout=10).json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= {
        "/api/v1/auth/login",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/rounds",
        "/api/v1/jobs/{job_id}/abort",
        "/api/v1/jobs/{job_id}/result",
        "/health",
    }
    assert set(schema["paths"]["/api/v1/jobs"]) == {"get", "post"}
    assert requests.get(f"{platform.url}/health", timeout=10).json() == {"status": "ok"}


# -- restart ------------------------------------------------------------------------------



def start_server_process(data: Path, port: int, s3, log_path: Path, *extra: str) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, CAROL_PASSWORD="carol-Secret-9001", PYTHONUNBUFFERED="1", PYTHONPATH=str(repo))
    command = [
        sys.executable,
        "-m",
        "resontech_nb.cli",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data),
        "--s3-endpoint",
        s3.endpoint_url,
        "--bucket",
        BUCKET,
        "--add-user",
        "carol@example.com:CAROL_PASSWORD",
        *extra,
    ]
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    proc.log_file = log_file  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/health"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log_path.read_text()}")
        try:
            return requests.get(url, timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(up, 60, "the platform server to start")
    return proc


def stop_server_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=30)
    proc.log_file.close()  # type: ignore[attr-defined]


def test_jobs_survive_a_server_restart_and_no_secret_leaks(s3, tmp_path):
    data, port, log_path = tmp_path / "platform", free_port(), tmp_path / "server.log"
    password = "carol-Secret-9001"
    config = config_for(f"http://127.0.0.1:{port}", "carol@example.com", s3, password=password)
    server = start_server_process(data, port, s3, log_path)
    try:
        job = ResonTechTarget(config).submit(built_job(tmp_path, rounds=4, seconds_per_round=2.0, name="restart"))
        wait_for(lambda: len(job.rounds) >= 1, 180, "the first round")

        server.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
        server.wait(timeout=30)
        with pytest.raises(Exception):  # noqa: B017 - any connection failure will do
            requests.get(f"{config.base_url}/health", timeout=2)

        server = start_server_process(data, port, s3, log_path)
        again = ResonTechTarget(config.replace(password="")).attach(job.id)  # the cached token still works
        assert again.status in ("RUNNING", "FINISHED")
        assert len(again.rounds) >= 1
        assert again.wait(timeout=240) == "FINISHED", again.error
        assert [r.round for r in again.rounds] == [0, 1, 2, 3]
        assert torch.allclose(again.result()["w"].double(), expected_weights(4))
    finally:
        stop_server_process(server)
        for local in (data / "nvflare" / "jobs").glob("*"):
            LocalTarget(home=data / "nvflare").attach(local.name).abort()

    secret = password.encode()
    assert secret not in log_path.read_bytes()
    for root in (data, jobs_home()):
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
    import boto3

    raw = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    for obj in raw.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        assert secret not in raw.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read(), obj["Key"]


def test_a_queued_job_survives_a_kill_of_the_server_and_runs_after_the_restart(s3, tmp_path):
    data, port, log_path = tmp_path / "platform", free_port(), tmp_path / "server.log"
    config = config_for(f"http://127.0.0.1:{port}", "carol@example.com", s3, password="carol-Secret-9001")
    server = start_server_process(data, port, s3, log_path, "--max-running", "1")
    try:
        target = ResonTechTarget(config)
        first = target.submit(built_job(tmp_path / "a", rounds=3, seconds_per_round=1.0, name="first"))
        second = target.submit(built_job(tmp_path / "b", rounds=2, name="second"))
        assert second.status == "QUEUED"
        wait_for(lambda: len(first.rounds) >= 1, 180, "the first job's first round")
        assert second.status == "QUEUED"

        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        server = start_server_process(data, port, s3, log_path, "--max-running", "1")
        again = [target.attach(job.id) for job in (first, second)]
        for job in again:
            assert job.wait(timeout=300) == "FINISHED", (job.id, job.error)
        assert [r.round for r in again[0].rounds] == [0, 1, 2]
        assert [r.round for r in again[1].rounds] == [0, 1]
        assert torch.allclose(again[1].result()["w"].double(), expected_weights(2))
        assert len(target.client().list_jobs()) == 2
    finally:
        stop_server_process(server)
        for local in (data / "nvflare" / "jobs").glob("*"):
            LocalTarget(home=data / "nvflare").attach(local.name).abort()
