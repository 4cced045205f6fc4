"""Latency of capture (with preflight) and of building the job folder, for a small and a mid-size CNN.

Prints a table and writes bench/results/capture_build.json.   .venv/bin/python bench/capture_build.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import torch.nn as nn  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards  # noqa: E402
from resontech_nb.data.shards import validate_shards  # noqa: E402


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x))


class MidCNN(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        channels = 3
        for width in (32, 64, 128, 256):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(256, 10)

    def forward(self, x):
        return self.head(self.body(x))


def timed(fn, repeat: int) -> dict:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def main(repeat: int = 10) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        shard_paths = make_synthetic_shards(tmp_path / "shards", n_clients=3, img_size=32, seed=0)
        shards = validate_shards(shard_paths, TrainingConfig(img_size=32))
        results["validate_3_shards"] = timed(lambda: validate_shards(shard_paths, TrainingConfig(img_size=32)), repeat)
        for cls in (SmallCNN, MidCNN):
            spec = capture(cls, input_shape=(1, 3, 64, 64))
            results[cls.__name__] = {
                "parameters": spec.param_count,
                "capture_with_preflight": timed(lambda c=cls: capture(c, input_shape=(1, 3, 64, 64)), repeat),
                "build_job": timed(
                    lambda s=spec: build_job(s, shards, TrainingConfig(img_size=64), FederationConfig(job_name="bench"),
                                             out=tmp_path / "job"),
                    repeat,
                ),
            }
    for key, value in results.items():
        print(f"{key:20s} {value}")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "capture_build.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
