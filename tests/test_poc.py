"""The nvflare target on a real POC deployment: server and two clients as separate processes,
jobs submitted through the FLARE API with the admin's startup kit.

The POC starts once for the module. The arithmetic is the one of test_fedavg: site-k adds k to
every weight, so the POC must give the simulator's weights bit for bit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fl_models
import psutil
import pytest
import torch

from resontech_nb.api import attach as api_attach
from resontech_nb.api import build_job
from resontech_nb.api import submit as api_submit
from resontech_nb.capture import capture
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.data.shards import validate_shards
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import ConfigError, JobNotFoundError, SubmitError
from resontech_nb.platform import PlatformServer
from resontech_nb.targets.base import BuiltJob
from resontech_nb.targets.local.target import LocalTarget
from resontech_nb.targets.nvflare.job import map_status
from resontech_nb.targets.nvflare.poc import PocDeployment, PocError
from resontech_nb.targets.nvflare.target import NVFlareTarget
from resontech_nb.targets.processes import processes_using

TRAINING = TrainingConfig(img_size=16)


def built_job(train_fn, shards: list[Path], out: Path, rounds: int, name: str, eval_fn=None, **extra) -> BuiltJob:
    spec = capture(fl_models.DeltaNet, train_fn, eval_fn=eval_fn)
    shard_set = validate_shards(shards, TRAINING)
    federation = FederationConfig(
        num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name=name, **extra
    )
    job_dir = build_job(spec, shard_set, TRAINING, federation, out=out)
    return BuiltJob(job_dir, dict(shard_set.shards), TRAINING, federation, spec.class_name)


def expected_weights(rounds: int) -> dict[str, torch.Tensor]:
    delta = sum(n * int(site.rsplit("-", 1)[1]) for site, n in fl_models.SAMPLES.items() if site != "site-3") / 30
    return {k: v.double() + rounds * delta for k, v in fl_models.DeltaNet().state_dict().items()}


@pytest.fixture(scope="module")
def poc(tmp_path_factory):
    deployment = PocDeployment(tmp_path_factory.mktemp("poc") / "workspace", n_clients=2)
    started = time.monotonic()
    deployment.start()
    print(f"POC start took {time.monotonic() - started:.1f} s")
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def target(poc, home):
    nvflare = NVFlareTarget(ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit)), home=home)
    yield nvflare
    nvflare.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=2, img_size=16, seed=7)


@pytest.fixture(scope="module")
def delta_job(shards, tmp_path_factory):
    return built_job(
        fl_models.metric_train,
        shards,
        tmp_path_factory.mktemp("build") / "delta",
        3,
        "delta",
        eval_fn=fl_models.delta_evaluate,
        select_metric="dist_loss",
        cross_site_eval=True,
    )


@pytest.fixture(scope="module")
def finished_jobs(target, delta_job, home):
    """The same built job on the POC and in the simulator, run side by side."""
    built = delta_job
    started = time.monotonic()
    on_poc = target.submit(built)
    in_simulator = LocalTarget(home=home).submit(built)
    assert on_poc.wait(timeout=240) == "FINISHED", on_poc.error
    print(f"3-round job on POC took {time.monotonic() - started:.1f} s from submit to FINISHED")
    assert in_simulator.wait(timeout=240) == "FINISHED", in_simulator.error
    return on_poc, in_simulator


@pytest.mark.slow
def test_poc_job_gives_the_simulators_weights(finished_jobs):
    on_poc, in_simulator = finished_jobs
    assert on_poc.target == "nvflare"
    poc_weights, sim_weights = on_poc.result(), in_simulator.result()
    assert poc_weights.keys() == sim_weights.keys() == {"w", "b"}
    for name, expected in expected_weights(3).items():
        assert torch.equal(poc_weights[name], sim_weights[name]), (name, poc_weights[name], sim_weights[name])
        assert torch.allclose(poc_weights[name].double(), expected, atol=1e-5), (name, poc_weights[name])


@pytest.mark.slow
def test_poc_job_records_every_round(finished_jobs):
    on_poc, in_simulator = finished_jobs
    rounds = on_poc.rounds
    assert [r.round for r in rounds] == [0, 1, 2]
    for record in rounds:
        assert {site: c.status for site, c in record.clients.items()} == {"site-1": "ok", "site-2": "ok"}
        assert {site: c.samples for site, c in record.clients.items()} == {"site-1": 10, "site-2": 20}
        assert record.global_loss == pytest.approx((10 * 1 + 20 * 2) / 30)
    assert [r.global_loss for r in rounds] == [r.global_loss for r in in_simulator.rounds]


@pytest.mark.slow
def test_poc_job_carries_the_simulators_metrics_validation_and_best_model(finished_jobs):
    on_poc, in_simulator = finished_jobs
    for poc, sim in zip(on_poc.rounds, in_simulator.rounds, strict=True):
        assert poc.metrics == sim.metrics and poc.validation == sim.validation
        assert {s: c.validation for s, c in poc.clients.items()} == {s: c.validation for s, c in sim.clients.items()}
    assert on_poc.rounds[-1].validation["mean_w"] == pytest.approx(expected_weights(3)["w"].mean().item())
    assert on_poc.best_round == in_simulator.best_round is not None
    assert on_poc.cross_site == in_simulator.cross_site and set(on_poc.cross_site) == {"global", "site-1", "site-2"}
    for name, value in in_simulator.result(which="best").items():
        assert torch.equal(on_poc.result(which="best")[name], value)


@pytest.mark.slow
def test_attach_from_another_process(finished_jobs, poc, target, home):
    on_poc, _ = finished_jobs
    script = (
        "import json, sys\n"
        "from resontech_nb import ResonTechConfig\n"
        "from resontech_nb.targets.nvflare.target import NVFlareTarget\n"
        "kit, home, job_id = sys.argv[1:]\n"
        "job = NVFlareTarget(ResonTechConfig(nvflare_startup_kit=kit), home=home).attach(job_id)\n"
        "print(json.dumps({'status': job.status, 'rounds': len(job.rounds), 'w': job.result()['w'].tolist()}))\n"
    )
    # The process must also exit on its own: no FLARE API thread may keep it alive.
    done = subprocess.run(
        [sys.executable, "-c", script, str(poc.admin_startup_kit), str(home), on_poc.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"status": "FINISHED", "rounds": 3, "w": on_poc.result()["w"].tolist()}
    with pytest.raises(JobNotFoundError, match="no such job"):
        target.attach("no-such-job")


@pytest.mark.slow
def test_abort_ends_a_running_job(poc, target, shards, tmp_path):
    built = built_job(fl_models.slow_train, shards, tmp_path / "slow", 100, "slow")
    job = target.submit(built)
    deadline = time.monotonic() + 120
    while not job.rounds and time.monotonic() < deadline:  # read live from the server's run folder
        time.sleep(0.5)
    assert job.rounds, f"no round recorded while the job ran ({job.status}, {job.error})"
    assert job.status == "RUNNING"
    assert processes_using(job.id), "the job runs in its own processes"

    job.abort()

    assert job.status == "ABORTED"
    assert target.attach(job.id).status == "ABORTED"
    assert job.rounds and all(r.round < 100 for r in job.rounds)
    deadline = time.monotonic() + 30
    while processes_using(job.id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_using(job.id) == []
    poc.wait_until_ready(timeout=30)  # the deployment itself is still up


@pytest.mark.slow
def test_scaffold_with_a_privacy_filter_runs_on_the_deployment(poc, target, shards, tmp_path):
    """The algorithm and the filter are plain NVFlare configuration: the deployment runs them as the arithmetic says."""
    train = fl_models.scaffold_train
    built = built_job(train, shards, tmp_path / "scaffold", 2, "scaffold", algorithm="scaffold", privacy="exclude:^b$")
    job = target.submit(built)
    assert job.wait(timeout=240) == "FINISHED", job.error
    samples = {s: n for s, n in fl_models.SAMPLES.items() if s != "site-3"}
    shift, _ = fl_models.expected_scaffold(2, samples)
    start = fl_models.DeltaNet().state_dict()
    assert torch.allclose(job.result()["w"].double(), start["w"].double() + shift, atol=1e-5)
    assert torch.equal(job.result()["b"], start["b"])  # withheld by every site: never changed on the server


BUCKET = "poc-platform"


@pytest.mark.slow
@pytest.mark.usefixtures("aws_env")
def test_the_platform_server_can_run_its_jobs_on_the_deployment(poc, finished_jobs, shards, s3, tmp_path):
    """PRODUCT part 7: platform jobs run on the simulator by default, or on an NVFlare deployment."""
    _, in_simulator = finished_jobs
    server = PlatformServer(
        tmp_path / "platform",
        s3_endpoint=s3.endpoint_url,
        bucket=BUCKET,
        nvflare_startup_kit=str(poc.admin_startup_kit),
    ).start()
    try:
        server.add_user("ops@example.com", "ops-Secret-9")
        config = ResonTechConfig(
            base_url=server.url,
            email="ops@example.com",
            password="ops-Secret-9",
            s3_bucket=BUCKET,
            s3_endpoint_url=s3.endpoint_url,
        )
        federation = FederationConfig(num_rounds=3, min_clients=2, wait_time_after_min_received=0, job_name="viapoc")
        job = api_submit(
            capture(fl_models.DeltaNet, fl_models.delta_train),
            shards,
            TRAINING,
            federation,
            target="resontech",
            config=config,
        )
        assert job.wait(timeout=240) == "FINISHED", job.error
        row = server.store.job(job.id)
        assert row.local_id and row.local_id != job.id  # the deployment's own job id
        assert not (server.data_dir / "nvflare").exists()  # nothing ran in the simulator
        expected = in_simulator.result()
        for name, value in job.result().items():
            assert torch.equal(value, expected[name]), name
        assert [r.global_loss for r in job.rounds] == [r.global_loss for r in in_simulator.rounds]
    finally:
        server.runner.join(timeout=30)
        server.stop()


@pytest.mark.slow
def test_data_summary_runs_on_the_sites_and_only_counts_reach_the_server(poc, shards, clean_env):
    """rt.data_summary(target="nvflare"): a statistics job on the deployment; the counts equal the manifests',
    a bin below min_count is withheld on its site, and no row's id or URI reaches the server."""
    from test_data_summary import check_site_counts, server_files_hold_no_row

    from resontech_nb.api import data_summary

    local = data_summary(shards)
    min_count = min(c for row in local.matrix() for c in row if c) + 1
    config = {"nvflare_startup_kit": str(poc.admin_startup_kit)}
    remote = data_summary(shards, target="nvflare", config=config, min_count=min_count)
    check_site_counts(remote, local, min_count)
    (result,) = (Path(os.environ["RESONTECH_NB_HOME"]) / "nvflare").glob("*/result/workspace")
    received = json.loads((result / "evaluation.json").read_text())["data_summary"]
    assert sorted(received) == ["site-1", "site-2"]
    server_files_hold_no_row(result, shards)


@pytest.mark.slow
def test_tracking_on_the_deployment_and_after_a_reattach(poc, shards, tmp_path):
    """Issue 30 on the nvflare target: the submitting kernel's tracker stops after a round, attach logs the rest."""
    import tracking_checks

    pytest.importorskip("mlflow.tracking")
    tracking = f"tensorboard:{tmp_path / 'tb'};mlflow:{tmp_path / 'mlruns'}"
    config = ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit))
    federation = FederationConfig(
        num_rounds=4, min_clients=2, wait_time_after_min_received=0, job_name="tracked-poc", tracking=tracking
    )
    job = api_submit(capture(fl_models.DeltaNet, fl_models.slow_logging_train), shards, TRAINING, federation,
                     target="nvflare", config=config)  # fmt: skip
    job_id = tracking_checks.stop_after_first_logged_round(job)
    del job  # the handle is gone with its kernel
    again = api_attach(job_id, config=config)
    assert again.wait(timeout=240) == "FINISHED", again.error
    assert again.tracking.wait(timeout=120)
    assert len(again.rounds) == 4 and again.rounds[-1].clients["site-2"].steps
    tracking_checks.assert_tensorboard_matches(tmp_path / "tb" / job_id, again)
    client, run = tracking_checks.mlflow_run((tmp_path / "mlruns").as_uri(), again, "tracked-poc")
    tracking_checks.assert_mlflow_matches(client, run, again)
    assert run.data.tags["target"] == "nvflare"


@pytest.mark.slow
def test_poc_listens_on_loopback_only_and_stops_completely(poc, delta_job):
    """Runs last in this module: it stops the module's POC."""
    listening = set()
    for proc in poc.processes():
        try:
            listening |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections() if c.status == "LISTEN"}
        except psutil.Error:
            continue
    assert {port for _, port in listening} >= set(poc.ports)
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening

    poc.stop()

    assert processes_using(str(poc.workspace)) == []
    for port in poc.ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # nobody listens on the ports any more
    config = ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit))
    with pytest.raises(SubmitError, match=r"cannot reach the NVFlare server .* is it running\?"):
        NVFlareTarget(config, connect_timeout=2).submit(delta_job)


def test_missing_or_wrong_startup_kit_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"%fl_config nvflare_startup_kit="):
        NVFlareTarget(ResonTechConfig(nvflare_startup_kit=""))
    a_file = tmp_path / "kit.txt"
    a_file.write_text("not a kit")
    with pytest.raises(ConfigError, match="is not a folder"):
        NVFlareTarget(ResonTechConfig(nvflare_startup_kit=str(a_file)))
    with pytest.raises(ConfigError, match="fed_admin.json"):
        NVFlareTarget(ResonTechConfig(nvflare_startup_kit=str(tmp_path)))


def test_nvflare_statuses_map_onto_ours():
    assert map_status("SUBMITTED").status == "SUBMITTED"
    assert map_status("DISPATCHED").status == "RUNNING"
    assert map_status("RUNNING").status == "RUNNING"
    assert map_status("FINISHED:COMPLETED").status == "FINISHED"
    assert map_status("FINISHED:ABORTED").status == "ABORTED"
    failed = map_status("FINISHED:EXECUTION_EXCEPTION")
    assert failed.status == "FAILED" and "EXECUTION_EXCEPTION" in failed.error
    assert map_status("FINISHED:CAN_NOT_SCHEDULE").status == "FAILED"
    assert map_status("FINISHED:ABANDONED").status == "FAILED"


@pytest.mark.slow
def test_start_refuses_ports_taken_by_another_program(tmp_path):
    nvflare_config = Path.home() / ".nvflare" / "config.conf"
    before = nvflare_config.read_bytes() if nvflare_config.exists() else None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        deployment = PocDeployment(tmp_path / "workspace", n_clients=1, admin_port=taken)
        deployment.prepare()
        assert deployment.ports[1] == taken
        assert (deployment.admin_startup_kit / "startup" / "fed_admin.json").is_file()
        with pytest.raises(PocError, match=rf"port\(s\) \[{taken}\] .* taken by another program"):
            deployment.start()
    assert processes_using(str(deployment.workspace)) == []
    # prepare leaves the user's own NVFlare CLI configuration alone
    assert (nvflare_config.read_bytes() if nvflare_config.exists() else None) == before
