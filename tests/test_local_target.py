"""The local target: default training loop, abort, reattach from another process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import fl_models
import psutil
import pytest
import torch.nn as nn

from resontech_nb import FederationConfig, TrainingConfig, attach, capture, make_synthetic_shards, submit
from resontech_nb.targets.processes import processes_using

pytestmark = pytest.mark.slow


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_default_training_loop_lowers_the_global_loss(tmp_path, multi_label):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, multi_label=multi_label, seed=3)
    job = submit(
        capture(TinyCNN),
        shards,
        training=TrainingConfig(img_size=16, local_epochs=2, batch_size=8, learning_rate=0.01),
        federation=FederationConfig(num_rounds=3, min_clients=2, wait_time_after_min_received=0, job_name="default"),
    )
    assert job.wait(timeout=400) == "FINISHED", job.error
    # FINISHED comes once the server's run has ended; the simulator's own wind-down is cut short, nothing stays up
    assert processes_using(job.workspace) == []
    losses = [r.global_loss for r in job.rounds]
    assert len(losses) == 3 and all(loss is not None for loss in losses)
    assert losses[-1] < losses[0], losses
    model = TinyCNN()
    model.load_state_dict(job.result())  # the weights come back and fit the class


def test_abort_stops_the_job_and_every_process(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=2)
    job = submit(
        capture(fl_models.DeltaNet, fl_models.slow_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=50, min_clients=2, wait_time_after_min_received=0, job_name="abort"),
    )
    deadline = time.monotonic() + 180
    while not job.rounds and time.monotonic() < deadline:
        time.sleep(1)
    assert job.rounds, "the job never finished a round"
    assert processes_using(job.workspace)
    job.abort()
    assert job.status == "ABORTED"
    assert attach(job.id).status == "ABORTED"
    time.sleep(1)
    assert processes_using(job.workspace) == []


def test_attach_from_another_process_sees_the_same_rounds(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=4)
    job = submit(
        capture(fl_models.DeltaNet, fl_models.delta_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name="attach"),
    )
    job.wait(timeout=300)
    code = (
        "import sys, resontech_nb as rt\n"
        "job = rt.attach(sys.argv[1])\n"
        "print(job.status, [(r.round, round(r.global_loss, 6), r.participants) for r in job.rounds])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, job.id], capture_output=True, text=True, check=True).stdout
    expected = [(r.round, round(r.global_loss, 6), r.participants) for r in job.rounds]
    assert out.strip() == f"FINISHED {expected}"


def test_a_training_function_that_breaks_the_contract_fails_the_job_with_the_fix(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=6)
    job = submit(
        capture(fl_models.DeltaNet, fl_models.zero_samples_train),
        shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name="broken"),
    )
    assert job.wait(timeout=300) == "FAILED"
    assert "failed round 1:" in job.error  # rounds are shown counting from 1
    assert "samples=0" in job.error and "return the real number of training samples" in job.error
    assert processes_using(job.workspace) == []


def test_a_forked_site_worker_takes_the_runners_arguments_environment_and_folder(tmp_path):
    import json

    code = (
        "import json, os, sys\n"
        "from resontech_nb.targets.local.site_worker import become\n"
        "old = os.environ['PYTHONPATH']\n"
        "become(json.loads(sys.argv[1]))\n"
        "print(json.dumps({'path': sys.path[:2], 'old_gone': old not in sys.path, 'argv': sys.argv[1:],\n"
        "                  'cwd': os.getcwd(), 'site': os.environ.get('SITE'), 'old': os.environ.get('OLD'),\n"
        "                  'session': os.getsid(0) == os.getpid()}))\n"
    )
    old, custom, cwd = tmp_path / "old", tmp_path / "custom", tmp_path / "server"
    for folder in (old, custom, cwd):
        folder.mkdir()
    arguments = {"argv": ["-o", "ws/site-1", "--client", "site-1"], "cwd": str(cwd),
                 "env": {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(custom), "SITE": "site-1"}}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arguments)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(old), "OLD": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["path"][:2] == [str(cwd), str(custom)] and seen["old_gone"]  # as if started with the job's path
    assert seen["argv"] == arguments["argv"] and seen["cwd"] == str(cwd)
    assert seen["site"] == "site-1" and seen["old"] is None and seen["session"]


SITE_WORKERS_CHECK = """
import json, os, sys
from resontech_nb.targets.local.simulator import NVFLARE_SITE_WORKER, SITE_WORKER, SiteWorkers

HELP = [sys.executable, "-m", NVFLARE_SITE_WORKER, "--help"]  # exit 0 once the arguments are taken: else 2
workers = SiteWorkers()
workers.fork_ahead(3)
ahead = list(workers._ahead)
out = {"children": all(os.waitpid(w.pid, os.WNOHANG) == (0, 0) for w in ahead)}
ahead[1].kill()
ahead[1].wait()
runs = [workers.Popen(HELP, env=dict(os.environ)) for _ in range(3)]
out["taken"] = [runs[0] is ahead[0], runs[1] is ahead[2], list(runs[2].args[:3]) == [sys.executable, "-m", SITE_WORKER]]
out["exits"] = [run.wait(timeout=60) for run in runs]
unused = SiteWorkers()
unused.fork_ahead(1)
out["left_waiting"] = unused._ahead[0].pid  # never handed over: ends with this process
print(json.dumps(out))
"""


def test_the_runner_gets_a_forked_worker_or_a_new_one_and_an_unused_one_ends_with_it():
    import json

    done = subprocess.run([sys.executable, "-c", SITE_WORKERS_CHECK], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["children"] and out["exits"] == [0, 0, 0], out
    assert out["taken"] == [True, True, True], out  # forked ones in turn, a dead one skipped, then started anew
    deadline = time.monotonic() + 10
    while psutil.pid_exists(out["left_waiting"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = psutil.pid_exists(out["left_waiting"]) and psutil.Process(out["left_waiting"]).status() != "zombie"
    assert not alive


ZYGOTE_CHECK = """
import json, os, signal, sys
from resontech_nb.targets.local.simulator import NVFLARE_SITE_WORKER, SiteWorkers
from resontech_nb.targets.local.site_fork import ZygoteSite

HELP = [sys.executable, "-m", NVFLARE_SITE_WORKER, "--help"]  # exit 0 once the arguments are taken: else 2
BAD = [sys.executable, "-m", NVFLARE_SITE_WORKER, "--no-such-option"]
workers = SiteWorkers()
workers.fork_ahead(1, zygote=True)
runs = [workers.Popen(HELP, env=dict(os.environ)) for _ in range(3)] + [workers.Popen(BAD, env=dict(os.environ))]
out = {"zygote": [type(run) is ZygoteSite for run in runs], "exits": [run.wait(timeout=60) for run in runs]}
slow = workers.Popen([sys.executable, "-m", NVFLARE_SITE_WORKER, "--help"], env=dict(os.environ, X="1"))
slow.kill()
out["killed"] = slow.wait(timeout=60)
out["zygote_pid"] = workers._zygote.pid
print(json.dumps(out))
"""


def test_sites_taking_turns_get_workers_forked_by_the_zygote_with_their_exit_codes():
    import json

    done = subprocess.run([sys.executable, "-c", ZYGOTE_CHECK], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["zygote"] == [False, True, True, True], out  # the one forked ahead first, then the zygote's
    assert out["exits"] == [0, 0, 0, 2], out
    assert out["killed"] in (0, -signal.SIGKILL), out  # killed, or done with --help before the kill
    deadline = time.monotonic() + 10
    while psutil.pid_exists(out["zygote_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = psutil.pid_exists(out["zygote_pid"]) and psutil.Process(out["zygote_pid"]).status() != "zombie"
    assert not alive  # the zygote ends with the runner's process


def test_what_every_sites_training_imports_is_imported_once_before_the_sites_are_forked(tmp_path):
    from resontech_nb import build_job
    from resontech_nb.targets.local.simulator import training_imports

    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=8, seed=1)
    default_loop = build_job(capture(TinyCNN), shards, out=tmp_path / "default")
    no_optimizer = build_job(capture(fl_models.DeltaNet, fl_models.delta_train), shards, out=tmp_path / "delta")
    assert training_imports(default_loop) == ("torch._dynamo",)  # what a torch optimizer imports when first made
    assert training_imports(no_optimizer) == ()
