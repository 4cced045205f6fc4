"""The job builder: a real NVFlare job folder that needs nothing from resontech_nb on the sites."""

from __future__ import annotations

import json
import re
import warnings

import fl_components
import fl_models
import pytest
import torch

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards, submit
from resontech_nb.errors import AlgorithmWarning, JobBuildError
from resontech_nb.jobcode import JOBCODE_DIR


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=2, img_size=16, seed=5)


def test_build_only_writes_a_complete_nvflare_job(tmp_path, shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    federation = FederationConfig(
        num_rounds=7, min_clients=2, wait_time_after_min_received=3, heart_beat_timeout=120, job_name="inspect"
    )
    job_dir = build_job(spec, shards, TrainingConfig(batch_size=4), federation, out=tmp_path / "job")

    meta = json.loads((job_dir / "meta.json").read_text())
    assert meta["name"] == "inspect" and meta["min_clients"] == 2
    server = json.loads((job_dir / "app/config/config_fed_server.json").read_text())
    assert server["server"]["heart_beat_timeout"] == 120
    sag = server["workflows"][0]["args"]
    assert (sag["num_rounds"], sag["min_clients"], sag["wait_time_after_min_received"]) == (7, 2, 3)
    client = json.loads((job_dir / "app/config/config_fed_client.json").read_text())
    args = client["executors"][0]["executor"]["args"]
    assert set(args["shards"]) == {"site-1", "site-2"}
    assert args["hyperparams"]["batch_size"] == 4 and args["hyperparams"]["num_classes"] >= 2
    custom = job_dir / "app/custom"
    assert (custom / "model_def.py").read_text() == spec.source
    shipped = {p.name for p in custom.glob("rt_*.py")}
    # every job-side module but the data-summary job's own, none left behind
    assert shipped == {p.name for p in JOBCODE_DIR.glob("rt_*.py")} - {"rt_statistics.py"}
    # Nothing shipped to the sites imports resontech_nb.
    for path in job_dir.rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+resontech_nb", path.read_text(), re.M), path


def test_too_few_shards_for_min_clients_is_refused(tmp_path, shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    with pytest.raises(JobBuildError, match="min_clients=3"):
        build_job(spec, shards, federation=FederationConfig(min_clients=3), out=tmp_path / "job")
    assert not (tmp_path / "job").exists()


def test_a_non_empty_foreign_folder_is_not_overwritten(tmp_path, shards):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(JobBuildError, match="not empty"):
        build_job(capture(fl_models.DeltaNet, fl_models.delta_train), shards, out=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_user_executor_and_persistor_replace_the_defaults(shards):
    job = submit(
        capture(fl_models.DeltaNet, fl_models.delta_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name="custom"),
        executor=fl_components.PlusOneExecutor,
        persistor=fl_components.OffsetPersistor,
    )
    assert job.wait(timeout=300) == "FINISHED", job.error
    start = fl_models.DeltaNet().state_dict()
    for name, value in job.result().items():
        assert torch.equal(value, start[name] + 102.0)


def _configs(job_dir):
    config = job_dir / "app" / "config"
    return (json.loads((config / f"config_fed_{side}.json").read_text()) for side in ("server", "client"))


def test_each_algorithm_is_plain_nvflare_configuration(tmp_path, shards):
    spec = capture(fl_models.DeltaNet, fl_models.scaffold_train)

    def build(name, **federation):
        return _configs(build_job(spec, shards, federation=FederationConfig(**federation), out=tmp_path / name))

    server, client = build("fedopt", algorithm="fedopt", fedopt_optimizer="adam")
    generator = next(c for c in server["components"] if c["id"] == "shareable_generator")
    assert generator["path"] == "rt_fedopt.RTFedOptShareableGenerator"  # NVFlare's PTFedOptModelShareableGenerator
    assert generator["args"]["optimizer_args"]["path"] == "torch.optim.Adam"
    assert generator["args"]["optimizer_args"]["args"]["lr"] == 0.01
    assert {"id": "model", "path": "model_def.DeltaNet", "args": {}} in server["components"]
    aggregator = next(c for c in server["components"] if c["id"] == "aggregator")
    assert aggregator["args"]["expected_data_kind"] == "WEIGHT_DIFF"
    assert client["executors"][0]["executor"]["args"]["send_difference"] is True

    server, client = build("scaffold", algorithm="scaffold")
    assert server["workflows"][0]["path"] == "rt_workflow.RTScatterAndGatherScaffold"
    aggregator = next(c for c in server["components"] if c["id"] == "aggregator")
    parts = {"_model_weights_": "WEIGHT_DIFF", "scaffold_c_diff": "WEIGHT_DIFF"}
    assert aggregator["args"]["expected_data_kind"] == parts

    server, client = build("private", privacy="exclude:^b$; svt:epsilon=0.5")
    filters = client["task_result_filters"][0]["filters"]
    assert [f["path"].rsplit(".", 1)[1] for f in filters] == ["ExcludeVars", "SVTPrivacy"]
    assert filters[0]["args"] == {"exclude_vars": "^b$"}
    assert filters[1]["args"]["epsilon"] == 0.5
    guard = server["task_result_filters"][0]["filters"][0]
    assert guard == {"path": "rt_guard.UpdateGuard", "args": {"withheld": "(?:^b$)"}}


def test_an_own_executor_cannot_take_an_algorithm(tmp_path, shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    with pytest.raises(JobBuildError, match="need the built-in executor"):
        build_job(
            spec, shards, federation=FederationConfig(algorithm="fedprox"), out=tmp_path / "j",
            executor=fl_components.WrongShapeExecutor,
        )


def test_the_speed_knobs_reach_nvflare(tmp_path, shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    for federation, chunk, gc_rounds, keep in (
        (FederationConfig(min_clients=2), 16 * 1024 * 1024, 0, False),
        (FederationConfig(min_clients=2, download_chunk_mb=2, memory_gc_rounds=5), 2 * 1024 * 1024, 5, False),
        (FederationConfig(min_clients=2, algorithm="scaffold", memory_gc_rounds=3), 16 * 1024 * 1024, 3, False),
    ):
        with warnings.catch_warnings():  # delta_train ignores SCAFFOLD's correction: only the config is read here
            warnings.simplefilter("ignore", AlgorithmWarning)
            job_dir = build_job(spec, shards, federation=federation, out=tmp_path / f"job-{chunk}-{gc_rounds}")
        server = json.loads((job_dir / "app/config/config_fed_server.json").read_text())
        client = json.loads((job_dir / "app/config/config_fed_client.json").read_text())
        for config in (server, client):  # NVFlare reads them from each side's own app config
            assert config["np_download_chunk_size"] == config["tensor_download_chunk_size"] == chunk
        assert server["workflows"][0]["args"]["memory_gc_rounds"] == gc_rounds
        assert server["workflows"][0]["args"]["task_check_period"] == 0.02
        assert client["executors"][0]["executor"]["args"]["keep_local_model"] is keep
    with_cross_site = FederationConfig(min_clients=2, cross_site_eval=True)
    spec_eval = capture(fl_models.DeltaNet, fl_models.delta_train, fl_models.delta_evaluate)
    job_dir = build_job(spec_eval, shards, federation=with_cross_site, out=tmp_path / "job-xsite")
    client = json.loads((job_dir / "app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"]["keep_local_model"] is True  # submit_model sends it


def test_local_sites_share_the_cores(monkeypatch):
    from resontech_nb.targets.local.target import simulator_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("RESONTECH_PASSWORD", "not for the job")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    env = simulator_env(2)
    assert env["OMP_NUM_THREADS"] == "4" and env["MALLOC_ARENA_MAX"] == "2" and "RESONTECH_PASSWORD" not in env
    assert simulator_env(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert simulator_env(2)["OMP_NUM_THREADS"] == "3"  # the user's own setting stays


def test_the_local_simulator_polls_briefly_but_otherwise_keeps_time(monkeypatch):
    import time
    import types

    from resontech_nb.targets.local import simulator

    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    runner = types.ModuleType("runner")
    runner.time = time
    simulator.shorten_polls(runner, poll_s=0.05)
    runner.time.sleep(1.0)
    runner.time.sleep(0.01)
    assert slept == [0.05, 0.01]
    assert runner.time.time() == pytest.approx(time.time(), abs=1.0) and runner.time.monotonic is time.monotonic
    assert time.sleep == slept.append  # the real module is untouched
    command = simulator.simulator_command("job", "ws", ["site-1", "site-2"])
    assert command[1:3] == ["-m", "resontech_nb.targets.local.simulator"]
    assert command[3:] == ["job", "-w", "ws", "-c", "site-1,site-2", "-t", "2"]


def test_the_local_simulator_starts_its_site_workers_through_the_launcher(monkeypatch):
    import subprocess

    from resontech_nb.targets.local import simulator

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, *rest, **kwargs: started.append((args, kwargs)))
    workers = simulator.SiteWorkers()
    worker = ["/py", "-m", "nvflare.private.fed.app.simulator.simulator_worker", "-o", "ws", "--client", "site-1"]
    workers.Popen(worker, shell=False, env={"A": "1"})
    workers.Popen(["/py", "-m", "something.else"])
    assert started[0] == (["/py", "-m", "resontech_nb.targets.local.site_worker", *worker[3:]], {"shell": False,
                                                                                              "env": {"A": "1"}})
    assert started[1][0] == ["/py", "-m", "something.else"]
    assert workers.TimeoutExpired is subprocess.TimeoutExpired and workers.PIPE == subprocess.PIPE
