"""Held-out accuracy on a real data set: each split and algorithm beside centralized training, over seeds.

scikit-learn's bundled UCI handwritten digits (1,797 8x8 grayscale images, offline); per seed a stratified 20 %
test set is held out and the rest split into 4 sites, IID and Dirichlet(alpha); the default loop trains the same
one-channel CNN through the local target for the same rounds x local epochs. Centralized is the same loop on one
site holding every training row. Accuracy is measured, not timed, so the numbers do not depend on how busy the
machine is. Writes bench/results/quality.json (or --out) and prints the table the README quotes.

    .venv/bin/python bench/quality.py [--seeds 0 1 2] [--rounds 5] [--epochs 2] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, capture, split_shards, submit  # noqa: E402

ALGORITHMS = ("fedavg", "fedprox", "scaffold", "fedopt")


class DigitsCNN(nn.Module):
    """The model of notebooks/real_data.ipynb."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def accuracy_of(weights: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray) -> float:
    net = DigitsCNN()
    net.load_state_dict(weights)
    net.eval()
    inputs = torch.from_numpy(x.astype(np.float32) / 127.5 - 1).unsqueeze(1)  # the default loop's scaling
    with torch.no_grad():
        return float((net(inputs).argmax(1) == torch.from_numpy(y)).float().mean())


def run_seed(seed: int, args: argparse.Namespace, spec, tmp: Path) -> dict[str, float]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16 * 255).round().astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )
    training = TrainingConfig(
        img_size=8, local_epochs=args.epochs, batch_size=32, learning_rate=args.lr, seed=seed, num_classes=10,
        lr_schedule=args.lr_schedule, balance_labels=args.balance_labels,
    )
    out = tmp / f"seed-{seed}"
    splits = {
        "centralized": split_shards((x_train, y_train), 1, seed=seed, out=out / "central"),
        "IID": split_shards((x_train, y_train), args.sites, seed=seed, out=out / "iid"),
        f"Dirichlet({args.alpha})": split_shards(
            (x_train, y_train), args.sites, scheme="dirichlet", alpha=args.alpha, seed=seed, out=out / "dirichlet"
        ),
    }
    found: dict[str, float] = {}
    for split, shards in splits.items():
        for algorithm in ("fedavg",) if split == "centralized" else args.algorithms:
            federation = FederationConfig(
                num_rounds=args.rounds, min_clients=len(shards), algorithm=algorithm,
                wait_time_after_min_received=0, job_name="quality",
            )
            job = submit(spec, shards, training=training, federation=federation)
            if job.wait(timeout=1800) != "FINISHED":
                raise SystemExit(f"{split} {algorithm} seed {seed} failed: {job.error}")
            key = "centralized" if split == "centralized" else f"{split} {algorithm}"
            found[key] = accuracy_of(job.result(), x_test, y_test)
            print(f"seed {seed} {key:28s} held-out accuracy {found[key]:.4f}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-schedule", default="constant")
    parser.add_argument("--balance-labels", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--out", default=str(HERE / "results" / "quality.json"))
    parser.add_argument("--smoke", action="store_true", help="one seed, 1 round, fedavg only")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.rounds, args.epochs, args.algorithms = [0], 1, 1, ["fedavg"]
    spec = capture(DigitsCNN, input_shape=(1, 1, 8, 8))
    per_seed: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            per_seed[seed] = run_seed(seed, args, spec, Path(tmp))
            report(per_seed, args)  # after every seed: a long run that is stopped keeps what it measured


def report(per_seed: dict[int, dict[str, float]], args: argparse.Namespace) -> None:
    """Print the table over the seeds measured so far and write the JSON."""
    seeds = list(per_seed)
    table = {}
    for key in per_seed[seeds[0]]:
        values = [per_seed[s][key] for s in seeds]
        table[key] = {
            "mean": statistics.fmean(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values,
        }
    base = table["centralized"]["mean"]
    print(f"\n| setting | held-out accuracy (mean of {len(seeds)} seed(s)) | vs centralized |")
    print("|---|---|---|")
    for key, row in table.items():
        print(f"| {key} | {row['mean']:.3f} ± {row['stdev']:.3f} | {100 * (row['mean'] - base):+.1f} points |")
    results = {
        "data": "sklearn load_digits, 20 % stratified held-out test set",
        "sites": args.sites, "alpha": args.alpha, "rounds": args.rounds, "local_epochs": args.epochs,
        "learning_rate": args.lr, "lr_schedule": args.lr_schedule, "balance_labels": args.balance_labels,
        "seeds": seeds, "table": table,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))

if __name__ == "__main__":
    main()
