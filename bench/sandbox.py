"""What the platform's bubblewrap sandbox costs: at a job's start, and per round.

Start: the same short command (``python -c pass``) run plainly and through ``Sandbox.command`` (bubblewrap's
namespaces and mounts, plus the small Python that sets the process limit inside), median of ``--starts``
runs; the difference is what sandboxing adds to a job's start. Per round: the same 2-site job through
``LocalTarget`` with and without the sandbox, ``--rounds`` rounds, ``--repeat`` times alternately; a round's cost
is the median of its rounds' own durations (``finished_at - started_at`` in the round records, the first round
left out), which a busy machine's start-up noise does not touch. Prints a table and writes
bench/results/sandbox.json.

    .venv/bin/python bench/sandbox.py [--starts 20] [--rounds 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from resontech_nb.building import builder  # noqa: E402
from resontech_nb.config.settings import FederationConfig, TrainingConfig  # noqa: E402
from resontech_nb.data.shards import validate_shards  # noqa: E402
from resontech_nb.data.synthetic import make_synthetic_shards  # noqa: E402
from resontech_nb.platform.sandbox import Sandbox  # noqa: E402
from resontech_nb.targets.base import BuiltJob  # noqa: E402
from resontech_nb.targets.local.target import LocalTarget  # noqa: E402

MODEL = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4, 4))

    def forward(self, x):
        return x


def fl_train_model(payload):
    weights = {k: v + 1.0 for k, v in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 10, "metrics": {"loss": 1.0}}
"""


def start_cost(sandbox: Sandbox, runs: int, tmp: Path) -> dict[str, float]:
    command = [sys.executable, "-c", "pass"]
    plain, boxed = [], []
    for i in range(runs):
        t = time.perf_counter()
        subprocess.run(command, check=True)
        plain.append(time.perf_counter() - t)
        folder = tmp / f"start{i}"
        folder.mkdir()
        t = time.perf_counter()
        subprocess.run(sandbox.command(command, folder), check=True, preexec_fn=sandbox.preexec())  # noqa: PLW1509
        boxed.append(time.perf_counter() - t)
    return {
        "plain_s": statistics.median(plain),
        "sandboxed_s": statistics.median(boxed),
        "added_s": statistics.median(boxed) - statistics.median(plain),
    }


def run_job(rounds: int, shards: dict, tmp: Path, name: str, sandbox: Sandbox | None) -> list[float]:
    """The durations of the job's rounds after the first."""
    training = TrainingConfig(img_size=8)
    federation = FederationConfig(num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name=name)
    shard_set = validate_shards(shards, training)
    spec = SimpleNamespace(source=MODEL, class_name="Net", has_train_fn=True, input_shape=None)
    job_dir = builder.build_job(spec, shard_set, training, federation, out=tmp / f"{name}-job")
    built = BuiltJob(job_dir, dict(shard_set.shards), training, federation, "Net")
    launcher = sandbox.launcher(readable=[tmp / "shards"]) if sandbox is not None else None
    job = LocalTarget(home=tmp / "home", launcher=launcher).submit(built)
    status = job.wait(timeout=600)
    if status != "FINISHED":
        raise SystemExit(f"{name}: {status}: {job.error}")
    return [r.finished_at - r.started_at for r in job.rounds[1:] if r.started_at and r.finished_at]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    why = Sandbox.available()
    if why is not None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sandbox = Sandbox(hidden=[tmp / "hidden"])
        start = start_cost(sandbox, args.starts, tmp)
        shards = make_synthetic_shards(tmp / "shards", n_clients=2, samples_per_client=(6, 8), img_size=8)
        durations: dict[str, list[float]] = {"plain": [], "sandboxed": []}
        for i in range(args.repeat):
            for label, box in (("plain", None), ("sandboxed", sandbox)):
                durations[label] += run_job(args.rounds, shards, tmp, f"{label}-{i}", box)
    per_round = {label: statistics.median(values) for label, values in durations.items()}
    results = {
        "start": start,
        "per_round_s": per_round,
        "per_round_added_s": per_round["sandboxed"] - per_round["plain"],
        "rounds": args.rounds,
        "repeat": args.repeat,
        "starts": args.starts,
    }
    print(
        f"start: plain {start['plain_s']:.3f} s, sandboxed {start['sandboxed_s']:.3f} s, added {start['added_s']:.3f} s"
    )
    print(f"round (median): plain {per_round['plain']:.4f} s, sandboxed {per_round['sandboxed']:.4f} s")
    print(f"per round added by the sandbox: {results['per_round_added_s']:+.4f} s")
    out = HERE / "results" / "sandbox.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
