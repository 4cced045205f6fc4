"""The ``resontech`` target end to end: S3 uploads, the platform's REST API, NVFlare behind it.

Through the Python API and through the magics in a real kernel; the weights that come back
equal the local target's for a deterministic model, and a re-submit sends no shard bytes again.
"""

from __future__ import annotations

import json
from pathlib import Path

import fl_models
import nbformat
import pytest
import torch
from nbclient import NotebookClient

from resontech_nb import api, split_shards
from resontech_nb.capture import capture
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import AuthError
from resontech_nb.job.handle import jobs_home
from resontech_nb.platform import PlatformServer
from resontech_nb.platform.loopback import ForwardingProxy
from resontech_nb.platform.uploads import user_id

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

REPO = Path(__file__).resolve().parents[1]
BUCKET = "target-tests"
EMAIL = "dana@example.com"
PASSWORD = "dana-Secret-4471"
FEDERATION = FederationConfig(num_rounds=2, min_clients=3, wait_time_after_min_received=0, job_name="remote")


@pytest.fixture
def s3_counter(s3):
    """The client's way to S3, counting the bytes that reach the S3 server."""
    with ForwardingProxy(s3.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def platform(s3_counter, tmp_path):
    """The platform, reaching S3 through the counting proxy: the upload URLs it presigns point there too."""
    server = PlatformServer(tmp_path / "platform", s3_endpoint=s3_counter.url, bucket=BUCKET).start()
    server.add_user(EMAIL, PASSWORD)
    yield server
    server.runner.join(timeout=60)
    for job in server.store.jobs():
        server.runner.abort(job)
    server.stop()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=3, img_size=8, seed=11)


def remote_config(platform: PlatformServer, password: str = PASSWORD) -> ResonTechConfig:
    """All a notebook user configures: the platform and the account (no bucket, no S3 keys)."""
    return ResonTechConfig(base_url=platform.url, email=EMAIL, password=password)


def test_submit_through_the_api_matches_the_local_target(platform, s3_counter, shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    training = TrainingConfig(img_size=8)
    config = remote_config(platform)
    local = api.submit(spec, shards, training, FEDERATION, target="local")
    remote = api.submit(spec, shards, training, FEDERATION, target="resontech", config=config)

    shard_bytes = sum(Path(p).stat().st_size for p in shards)
    assert s3_counter.bytes_by_method["PUT"] >= shard_bytes  # the shards went up once
    assert json.loads((jobs_home() / "index" / f"{remote.id}.json").read_text())["target"] == "resontech"

    assert remote.wait(timeout=300) == "FINISHED", remote.error
    assert local.wait(timeout=300) == "FINISHED", local.error
    remote_weights, local_weights = remote.result(), local.result()
    assert remote_weights.keys() == local_weights.keys()
    for name in local_weights:
        assert torch.equal(remote_weights[name], local_weights[name]), name
    assert [r.global_loss for r in remote.rounds] == [r.global_loss for r in local.rounds]
    assert {s: c.samples for s, c in remote.rounds[-1].clients.items()} == fl_models.SAMPLES

    # a re-submit with unchanged shards and model: nothing new reaches S3, a second job runs
    s3_counter.reset_counts()
    again = api.submit(spec, shards, training, FEDERATION, target="resontech", config=config)
    assert again.id != remote.id
    assert set(again.upload_report.skipped) >= {"site-1", "site-2", "site-3"}
    assert again.upload_report.bytes_uploaded == 0
    assert s3_counter.bytes_by_method["PUT"] == 0
    assert [m for m, _, _ in s3_counter.requests if m in ("PUT", "POST")] == []
    assert all(f"/users/{user_id(EMAIL)}/sha256/" in path for _, path, _ in s3_counter.requests)
    # attach by id alone (a new kernel) finds the target from the local index
    assert api.attach(again.id, config=config.replace(password="")).id == again.id
    again.abort()


def test_submit_without_login_uploads_nothing(platform, s3_counter, shards):
    config = remote_config(platform, password="")
    with pytest.raises(AuthError, match="%fl_login"):
        api.submit(
            capture(fl_models.DeltaNet, fl_models.delta_train),
            shards,
            {"img_size": 8},
            FEDERATION,
            target="resontech",
            config=config,
        )
    assert s3_counter.requests == []
    assert platform.store.jobs() == []


MODEL_CELL = """%%fl_model
import torch
import torch.nn as nn

SAMPLES = {"site-1": 10, "site-2": 20, "site-3": 50}


class DeltaNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
        self.b = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x @ self.w + self.b


def fl_train_model(payload):
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}
"""


@pytest.fixture
def repo_on_path(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.mark.usefixtures("repo_on_path")
def test_fl_submit_target_resontech_in_a_notebook(platform, s3, shards, tmp_path, kernel_name, monkeypatch):
    monkeypatch.setenv("RESONTECH_PASSWORD", PASSWORD)  # what %fl_login would ask for; never in the notebook
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # the kernel holds no S3 keys (the platform took its own when it started)
    shard_dir = Path(shards[0]).parent
    cells = [
        "%load_ext resontech_nb",
        f"%fl_config base_url={platform.url} email={EMAIL}",
        MODEL_CELL,
        f"%fl_submit --target resontech --shards {shard_dir} --rounds 2 --min-clients 3 --img-size 8 "
        "--job-name nbremote --wait",
        "print({k: v.tolist() for k, v in fl_job.result().items()}, fl_job.status)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name=kernel_name, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()

    dashboards = [
        o.metadata["resontech_nb"]
        for o in nb.cells[3].outputs
        if o.output_type == "display_data" and "resontech_nb" in o.get("metadata", {})
    ]
    assert dashboards and dashboards[-1]["status"] == "FINISHED"
    assert [r["round"] for r in dashboards[-1]["rounds"]] == [0, 1]
    delta = (10 * 1 + 20 * 2 + 50 * 3) / 80
    expected = {
        "w": (torch.arange(6, dtype=torch.float32).reshape(2, 3) + 2 * delta).tolist(),
        "b": (torch.ones(3) + 2 * delta).tolist(),
    }
    printed = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert printed.strip() == f"{expected} FINISHED"
    assert [j.owner for j in platform.store.jobs()] == [EMAIL]
    assert PASSWORD not in nbformat.writes(nb)


def comparable(job) -> list[dict]:
    """What a user reads of a job's rounds, without timestamps."""
    return [
        {
            "round": r.round,
            "metrics": r.metrics,
            "validation": r.validation,
            "clients": {name: (c.status, c.samples, c.metrics, c.validation) for name, c in r.clients.items()},
        }
        for r in job.rounds
    ]


def test_evaluation_through_the_platform_matches_the_local_target(platform, s3, shards):
    spec = capture(fl_models.DeltaNet, fl_models.metric_train, eval_fn=fl_models.delta_evaluate)
    training = TrainingConfig(img_size=8)
    federation = FEDERATION.replace(select_metric="dist_loss", cross_site_eval=True, num_rounds=3)
    local = api.submit(spec, shards, training, federation, target="local")
    remote = api.submit(
        spec, shards, training, federation, target="resontech", config=remote_config(platform)
    )
    assert remote.wait(timeout=300) == "FINISHED", remote.error
    assert local.wait(timeout=300) == "FINISHED", local.error
    assert comparable(remote) == comparable(local)
    assert remote.rounds[-1].validation["mean_w"] == pytest.approx(2.5 + 3 * 2.5)
    assert remote.best_round == local.best_round == 0  # |mean_w - 5| is smallest for round 1's model
    assert remote.cross_site == local.cross_site and set(remote.cross_site) == {"global", "site-1", "site-2", "site-3"}
    for name, value in local.result(which="best").items():
        assert torch.equal(remote.result(which="best")[name], value)


def test_fedopt_with_a_percentile_filter_through_the_platform(platform, s3, shards):
    """The algorithm and the filter travel in the job folder: the platform runs them as the arithmetic says."""
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    federation = FEDERATION.replace(algorithm="fedopt", fedopt_momentum=0.5, privacy="percentile:gamma=0.01")
    remote = api.submit(
        spec, shards, TrainingConfig(img_size=8), federation, target="resontech",
        config=remote_config(platform),
    )
    assert remote.wait(timeout=300) == "FINISHED", remote.error
    # Updates clipped to 0.375 a round (see test_algorithms), then SGD with momentum 0.5: 0.375 + 0.5625.
    start = fl_models.DeltaNet().state_dict()
    for name, value in remote.result().items():
        assert torch.allclose(value.double(), start[name].double() + 0.375 + 0.5625, atol=1e-5), (name, value)


def test_tracking_through_the_platform_and_after_a_reattach(platform, s3, shards, tmp_path):
    """Issue 30 on the resontech target: the submitting kernel's tracker stops after a round, attach logs the rest."""
    import tracking_checks

    pytest.importorskip("mlflow.tracking")
    tracking = f"tensorboard:{tmp_path / 'tb'};mlflow:{tmp_path / 'mlruns'}"
    config = remote_config(platform)
    federation = FEDERATION.replace(num_rounds=4, job_name="tracked-remote", tracking=tracking)
    spec = capture(fl_models.DeltaNet, fl_models.slow_logging_train)
    job = api.submit(spec, shards, TrainingConfig(img_size=8), federation, target="resontech", config=config)
    job_id = tracking_checks.stop_after_first_logged_round(job)
    del job  # the handle is gone with its kernel
    again = api.attach(job_id, config=config)
    assert again.wait(timeout=300) == "FINISHED", again.error
    assert again.tracking.wait(timeout=120)
    assert len(again.rounds) == 4 and again.rounds[-1].clients["site-3"].steps
    tracking_checks.assert_tensorboard_matches(tmp_path / "tb" / job_id, again)
    client, run = tracking_checks.mlflow_run((tmp_path / "mlruns").as_uri(), again, "tracked-remote")
    tracking_checks.assert_mlflow_matches(client, run, again)
    assert run.data.tags["target"] == "resontech"


def test_data_summary_through_the_platform_sends_counts_only(platform, s3, tmp_path):
    """The statistics job runs on the platform like a training job: the counts are the manifests', a bin below
    min_count is withheld, and no row's id or URI is in what the platform answers or kept."""
    import zipfile

    import numpy as np
    from test_data_summary import check_site_counts, server_files_hold_no_row

    images = np.random.default_rng(0).integers(0, 256, size=(48, 8, 8), dtype=np.uint8)
    labels = np.array([0] * 20 + [1] * 3 + [2] * 10 + [3] * 15)
    split = split_shards((images, labels), 2, scheme="pathological", classes_per_site=2, out=tmp_path / "s")
    local = api.data_summary(split, sample=100)
    remote = api.data_summary(split, target="resontech", config=remote_config(platform), min_count=4, sample=100)
    check_site_counts(remote, local, 4)

    (job,) = platform.store.jobs()
    assert job.status == "FINISHED", job.error
    from resontech_nb.targets.resontech.target import ResonTechTarget

    answer = ResonTechTarget(remote_config(platform)).client().evaluation(job.id)  # what the platform returns
    fields = {"train", "val", "test", "multi_label", "labels", "image_sizes", "image_modes"}
    assert set(answer["data_summary"]) == {"site-1", "site-2"}
    assert all(set(site) == fields for site in answer["data_summary"].values())
    answered = json.dumps(answer)
    for shard in split:
        with zipfile.ZipFile(shard) as archive:
            rows = [json.loads(line) for line in archive.read("manifest.ndjson").splitlines()]
        assert rows and not [r for r in rows if r["id"] in answered or r["uri"].split("//")[-1] in answered]
    (server_dir,) = platform.data_dir.rglob(f"{job.local_id}/workspace/server")  # where the platform ran it
    server_files_hold_no_row(server_dir, split)
