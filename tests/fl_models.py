"""Models with known arithmetic, used by the tests that run NVFlare for real."""

import time

import torch
import torch.nn as nn

SAMPLES = {"site-1": 10, "site-2": 20, "site-3": 50}


class DeltaNet(nn.Module):
    """Weights start at known values; every site adds its own delta each round."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
        self.b = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x @ self.w + self.b


def delta_train(payload):
    """site-k adds k to every weight and reports a sample count that differs per site."""
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}


def flaky_train(payload):
    """Like delta_train, but site-2 fails its second round."""
    if payload["site_name"] == "site-2" and payload["round"] == 1:
        raise RuntimeError("disk full on site-2")
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}


def slow_train(payload):
    """Takes a while per round, so a test can abort the job mid-run."""
    time.sleep(2)
    weights = {name: t + 1.0 for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 1, "metrics": {"loss": 1.0}}


def zero_samples_train(payload):
    """Breaks the training contract: FedAvg cannot weigh a site that trained on nothing."""
    return {"weights": payload["initial_weights"], "samples": 0}
