"""The model both jobs in job_overhead.py train: small, so the time measured is the framework's."""

import torch
import torch.nn as nn


class BenchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def bench_train(payload):
    weights = {k: v + 0.01 for k, v in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 10, "metrics": {"loss": 1.0}}


SLEEP_S = 4.0


def sleeping_train(payload):
    """Training that only waits: what the server and clients do meanwhile is polling."""
    import time

    time.sleep(4.0)
    return bench_train(payload)


SIZE_ENV = "RT_BENCH_MILLIONS"


class ScaledNet(nn.Module):
    """About ``$RT_BENCH_MILLIONS`` million parameters (default 1) in 1024 x 1024 linear layers."""

    def __init__(self):
        super().__init__()
        import os

        millions = float(os.environ.get(SIZE_ENV, "1"))
        layers = max(1, round(millions * 1e6 / (1024 * 1024 + 1024)))
        self.layers = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(layers)])

    def forward(self, x):
        return self.layers(x)
