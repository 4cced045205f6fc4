"""The local target: default training loop, abort, reattach from another process."""

from __future__ import annotations

import subprocess
import sys
import time

import fl_models
import pytest
import torch.nn as nn

from resontech_nb import FederationConfig, TrainingConfig, attach, capture, make_synthetic_shards, submit
from resontech_nb.processes import processes_using

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
