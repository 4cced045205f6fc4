"""Reproducible runs: the same data, model and settings give the same global weights, bit for bit on CPU, on the
local target (NVFlare's simulator really running); another seed gives other weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit

pytestmark = pytest.mark.slow


class TinyCNN(nn.Module):
    """The quickstart's model, with a dropout layer: randomness inside the default loop too."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(1)))


def _run(spec, shards, seed: int, name: str) -> dict[str, torch.Tensor]:
    training = TrainingConfig(img_size=16, local_epochs=1, batch_size=8, learning_rate=0.01, seed=seed)
    federation = FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name=name)
    job = submit(spec, shards, training=training, federation=federation)
    assert job.wait(timeout=300) == "FINISHED", job.error
    return job.result()


def test_the_same_job_twice_gives_the_same_weights_bit_for_bit(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(24, 32), img_size=16, seed=3)
    spec = capture(TinyCNN)
    first = _run(spec, shards, seed=7, name="again-1")
    second = _run(spec, shards, seed=7, name="again-2")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other = _run(spec, shards, seed=8, name="other-seed")
    assert any(not torch.equal(first[key], other[key]) for key in first)
