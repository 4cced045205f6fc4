"""Tracking for real: a local NVFlare job logged to TensorBoard (read back with TensorBoard's own reader), a real
``mlflow server`` on loopback (sqlite backend) and an MLflow file store, each compared with ``job.rounds``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fl_models
import pytest
import torch
import tracking_checks
from tracking_checks import expected_points, tensorboard_scalars

from resontech_nb import (
    FederationConfig,
    TrainingConfig,
    attach,
    capture,
    data_summary,
    make_synthetic_shards,
    submit,
)
from resontech_nb.errors import ConfigError
from resontech_nb.targets.nvflare.poc_project import free_port

pytestmark = pytest.mark.slow

pytest.importorskip("mlflow.tracking")
pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

ROUNDS = 3


class MlflowServer:
    """A real ``mlflow server`` on a free loopback port with a sqlite backend; ``stop()``/``start()`` keep the data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "server.log", "ab"),
            start_new_session=True,
            # no job runner: it leaves a folder under /dev/shm behind (MLflow's own mkdtemp) and is not used here
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2).close()
                return self
            except OSError:
                assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("tracking")
        mp.setenv("RESONTECH_NB_HOME", str(root / "rt_home"))
        mp.setenv("RESONTECH_NB_CONFIG", str(root / "no-config.toml"))
        yield root


@pytest.fixture(scope="module")
def mlflow_server(home):
    folder = home / "mlflow_server"
    folder.mkdir()
    server = MlflowServer(folder).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tracked(home, mlflow_server):
    """One finished job logged to TensorBoard, the MLflow server and an MLflow file store."""
    shards = make_synthetic_shards(home / "shards", n_clients=2, img_size=8, seed=5)
    tracking = f"tensorboard:{home / 'tb'}; mlflow:{mlflow_server.url}; mlflow:{home / 'mlruns'}"
    job = submit(
        capture(fl_models.DeltaNet, fl_models.logging_train, fl_models.delta_evaluate),
        shards,
        training=TrainingConfig(img_size=8),
        federation=FederationConfig(
            num_rounds=ROUNDS,
            min_clients=2,
            wait_time_after_min_received=0,
            job_name="tracked",
            select_metric="score",
            tracking=tracking,
            tracking_models=True,
        ),
    )
    assert job.wait(timeout=400) == "FINISHED", job.error
    assert job.tracking.wait(timeout=120)
    return job


def test_the_job_has_its_sites_step_logs_in_its_records(tracked):
    steps = {site: c.steps for site, c in tracked.rounds[1].clients.items()}
    # payload["log"]'s default step runs on over the job: round 1 holds steps 2 and 3
    assert steps == {
        "site-1": (("batch_loss", 1.0, 2), ("batch_loss", 1.5, 3)),
        "site-2": (("batch_loss", 2.0, 2), ("batch_loss", 2.5, 3)),
    }


def test_tensorboard_holds_every_round_as_the_records_say(tracked, home):
    scalars = tensorboard_scalars(home / "tb" / tracked.id)
    for key, by_round in expected_points(tracked).items():
        assert scalars[key] == pytest.approx(by_round), key
    assert set(scalars["global/val/score"]) == set(range(ROUNDS))
    assert scalars["site/site-2/log/batch_loss"] == pytest.approx({s: 2.0 + (s % 2) / 2 for s in range(2 * ROUNDS)})
    assert scalars["site/site-1/took_part"] == {r: 1.0 for r in range(ROUNDS)}


def test_tensorboards_own_loader_sees_one_run_per_job_with_its_scalars(tracked, home):
    """What ``%tensorboard --logdir DIR`` reads: the multiplexer over DIR lists the job as one run."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    multiplexer = EventMultiplexer(tensor_size_guidance={"scalars": 0}).AddRunsFromDirectory(str(home / "tb"))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == [tracked.id]
    scalars = multiplexer.PluginRunToTagToContent("scalars")  # what the scalars dashboard lists
    assert set(scalars) == {tracked.id}
    assert set(expected_points(tracked)) <= set(scalars[tracked.id])
    events = multiplexer.Tensors(tracked.id, "global/loss")
    loss = {e.step: tensor_util.make_ndarray(e.tensor_proto).item() for e in events}
    assert loss == pytest.approx(expected_points(tracked)["global/loss"])


def test_the_tensorboard_magic_in_a_kernel_serves_the_jobs_scalars(tracked, home, kernel_name, monkeypatch):
    """``%load_ext tensorboard`` / ``%tensorboard --logdir DIR`` in a real ipykernel, as the README says; the server
    it starts (on loopback) is asked over HTTP for the job's scalars, then stopped by the pid it registered."""
    import json
    import os
    from urllib.parse import quote

    import psutil
    from jupyter_client import KernelManager

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # an active venv
    port = free_port()
    manager = KernelManager(kernel_name=kernel_name)
    manager.start_kernel(cwd=str(home))
    client = manager.client()
    client.start_channels()
    shown: list[str] = []
    printed: list[str] = []

    def run(code: str) -> None:
        def keep(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                printed.append(msg["content"]["text"])
            if msg["msg_type"] in ("stream", "display_data", "update_display_data", "error"):
                shown.append(json.dumps(msg["content"]))

        reply = client.execute_interactive(code, timeout=180, output_hook=keep)
        assert reply["content"]["status"] == "ok", shown

    pid = None
    try:
        client.wait_for_ready(timeout=60)
        run("%load_ext tensorboard")
        run(f"%tensorboard --logdir tb --host 127.0.0.1 --port {port}")  # DIR as in tracking=tensorboard:tb
        run(f"from tensorboard import manager\nprint([i.pid for i in manager.get_all() if i.port == {port}])")
        (pid,) = json.loads(printed[-1])
        assert any(f"const port = {port};" in text for text in shown)  # the frame the magic displayed
        base = f"http://127.0.0.1:{port}/data/plugin/scalars"
        tags: dict = {}
        deadline = time.monotonic() + 120
        while "global/loss" not in tags.get(tracked.id, {}) and time.monotonic() < deadline:
            try:
                tags = json.load(urllib.request.urlopen(f"{base}/tags", timeout=10))
            except OSError:
                pass
            time.sleep(0.5)
        assert list(tags) == [tracked.id]  # one run per job, named by its id
        assert set(expected_points(tracked)) <= set(tags[tracked.id])
        for key in ("global/loss", "global/val/score", "site/site-1/log/batch_loss"):
            url = f"{base}/scalars?run={quote(tracked.id)}&tag={quote(key)}"
            served = {step: value for _, step, value in json.load(urllib.request.urlopen(url, timeout=10))}
            assert served == pytest.approx(expected_points(tracked)[key]), key
    finally:
        if pid is not None:
            stop_tensorboard(psutil.Process(pid))
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def stop_tensorboard(server) -> None:
    """SIGTERM (SIGKILL after 20 s) to a TensorBoard the kernel started; it has ended once it is the kernel's zombie."""
    import signal

    import psutil

    def ended() -> bool:
        try:
            return server.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if ended():
            return
        server.send_signal(sig)
        deadline = time.monotonic() + 20
        while not ended() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert ended(), f"TensorBoard {server.pid} did not stop"


def mlflow_run(uri: str, job):
    return tracking_checks.mlflow_run(uri, job, "tracked")


def assert_mlflow_matches(client, run, job) -> None:
    tracking_checks.assert_mlflow_matches(client, run, job)
    assert run.data.params["algorithm"] == "fedavg"
    assert run.data.params["federation.num_rounds"] == str(ROUNDS)
    assert run.data.params["parameters"] == "9"


def test_the_mlflow_server_holds_the_run_and_both_models(tracked, mlflow_server, tmp_path):
    client, run = mlflow_run(mlflow_server.url, tracked)
    assert_mlflow_matches(client, run, tracked)
    steps = client.get_metric_history(run.info.run_id, "site/site-1/log/batch_loss")
    assert sorted((m.step, m.value) for m in steps) == [(s, 1.0 + (s % 2) / 2) for s in range(2 * ROUNDS)]
    for which in ("final", "best"):
        path = client.download_artifacts(run.info.run_id, f"models/{which}_model.pt", str(tmp_path))
        saved = torch.load(path)
        expected = tracked.result(which)
        assert saved.keys() == expected.keys()
        assert all(torch.equal(torch.as_tensor(saved[k]), torch.as_tensor(expected[k])) for k in saved)


def test_the_mlflow_file_store_holds_the_run(tracked, home):
    client, run = mlflow_run((home / "mlruns").as_uri(), tracked)
    assert_mlflow_matches(client, run, tracked)


def test_attach_after_a_restart_logs_only_what_is_missing(tracked, home, mlflow_server):
    again = attach(tracked.id, tracking=f"tensorboard:{home / 'tb2'};mlflow:{mlflow_server.url}")
    assert again.tracking is not tracked.tracking
    assert again.tracking.wait(timeout=120)
    # the run on the server is found by its job id tag and nothing is logged twice ...
    client, run = mlflow_run(mlflow_server.url, tracked)
    assert_mlflow_matches(client, run, tracked)
    # ... a new TensorBoard folder gets everything; the settings came back with the job id
    scalars = tensorboard_scalars(home / "tb2" / tracked.id)
    assert scalars["global/val/score"] == pytest.approx(expected_points(tracked)["global/val/score"])
    assert again.settings["federation"]["job_name"] == "tracked"
    assert again.settings["data_summary"]["counts"] == data_summary(home / "shards").matrix()  # for the dashboard
    assert not [n for n in again.notes if "tracking" in n]


def test_an_unknown_scheme_or_an_unreachable_server_fails_before_anything_is_submitted(home):
    with pytest.raises(ConfigError, match="unknown scheme 'wandb'"):
        FederationConfig(tracking="wandb:project")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_PASSWORD") as refused:  # a password is never kept
        FederationConfig(tracking="mlflow:https://bob:hunter2@mlflow.example.com")
    assert "hunter2" not in str(refused.value)
    dead = f"http://127.0.0.1:{free_port()}"
    jobs_before = set((home / "rt_home" / "jobs").glob("*"))
    with pytest.raises(ConfigError, match=f"MLflow tracking server {dead} does not answer"):
        submit(
            capture(fl_models.DeltaNet, fl_models.delta_train),
            home / "shards",
            training=TrainingConfig(img_size=8),
            federation=FederationConfig(num_rounds=1, job_name="never", tracking=f"mlflow:{dead}"),
        )
    assert set((home / "rt_home" / "jobs").glob("*")) == jobs_before
    (home / "a-file").write_text("not a folder")
    for store in (f"sqlite:///{home / 'a-file' / 'mlflow.db'}", str(home / "a-file" / "mlruns")):
        with pytest.raises(ConfigError, match="the MLflow store .*a-file.* cannot be opened"):
            submit(
                capture(fl_models.DeltaNet, fl_models.delta_train),
                home / "shards",
                training=TrainingConfig(img_size=8),
                federation=FederationConfig(num_rounds=1, job_name="never", tracking=f"mlflow:{store}"),
            )
    assert set((home / "rt_home" / "jobs").glob("*")) == jobs_before


def test_a_tracking_server_that_goes_away_mid_job_never_fails_it(home, tracked, mlflow_server):
    """Last in the module: it stops and starts the module's server (one server start less than a server of its own)."""
    server = mlflow_server
    job = submit(
        capture(fl_models.DeltaNet, fl_models.slow_logging_train),
        home / "shards",
        training=TrainingConfig(img_size=8),
        federation=FederationConfig(
            num_rounds=6,
            min_clients=2,
            wait_time_after_min_received=0,
            job_name="tracked",
            tracking=f"mlflow:{server.url}",
        ),
    )
    job.tracking.grace_s = 600  # on a loaded machine the server's restart may come well after the job's end
    deadline = time.monotonic() + 300
    while not job.rounds and time.monotonic() < deadline:
        time.sleep(0.5)
    server.stop()
    notes: list[str] = []
    while not any("stopped answering" in n for n in notes) and time.monotonic() < deadline:
        time.sleep(0.5)
        notes = job.notes
    assert any(f"tracking mlflow:{server.url} stopped answering" in n for n in notes), notes
    server.start()
    assert job.wait(timeout=300) == "FINISHED", job.error  # the job never noticed
    assert job.tracking.wait(timeout=180)
    assert any("everything it missed was logged" in n for n in job.notes), job.notes
    assert len(job.rounds) == 6
    client, run = mlflow_run(server.url, job)
    history = client.get_metric_history(run.info.run_id, "global/loss")
    assert {m.step: m.value for m in history} == pytest.approx({r.round: r.global_loss for r in job.rounds})
    assert run.data.tags["status"] == "FINISHED"


def test_fl_submit_tracking_flags_fail_before_anything_is_submitted(ip, home, tmp_path):
    from IPython.core.error import UsageError

    ip.user_ns["fl_model"] = capture(fl_models.DeltaNet, fl_models.delta_train)
    with pytest.raises(UsageError, match="unknown scheme 'wandb'"):
        ip.run_line_magic("fl_submit", f"--shards {home / 'shards'} --tracking wandb:project --tracking-models")
    dead = f"http://127.0.0.1:{free_port()}"
    ip.run_line_magic("fl_config", f"tracking=mlflow:{dead}")
    with pytest.raises(UsageError, match=f"{dead} does not answer"):
        ip.run_line_magic("fl_submit", f"--shards {home / 'shards'} --img-size 8")
    assert not (tmp_path / "rt_home" / "jobs").exists() or not list((tmp_path / "rt_home" / "jobs").iterdir())
