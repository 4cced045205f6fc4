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


SCALED_NET_SOURCE = """import torch.nn as nn

LAYERS = {layers}  # 1024 x 1024 linear layers: about {millions} million parameters


class ScaledNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(LAYERS)])

    def forward(self, x):
        return self.layers(x)
"""


def scaled_net_module(millions: float, folder):
    """A module ``scaled_net_<M>`` in ``folder`` whose ``ScaledNet`` has about ``millions`` million parameters.

    The size is a constant of the module, so capture writes it into model_def.py as it is.
    """
    import importlib
    import sys
    from pathlib import Path

    layers = max(1, round(millions * 1e6 / (1024 * 1024 + 1024)))
    name = f"scaled_net_{layers}"
    Path(folder, f"{name}.py").write_text(SCALED_NET_SOURCE.format(layers=layers, millions=millions))
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


class QuickstartCNN(nn.Module):
    """The quickstart notebook's TinyCNN (4 classes, 32 x 32 images), trained by the default loop."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
