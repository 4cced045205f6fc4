"""Rounds to a target validation accuracy for each algorithm on a label-skewed split.

Four sites, each holding 2 of the 8 synthetic classes (``make_synthetic_shards(classes_per_client=2)``),
the default training loop on ``SmallConvNet8`` from the same starting weights, through the local target.
Per algorithm: validation accuracy and loss of each round's global model (sample-weighted over the
sites' held-out rows), the first round reaching ``--target``, and the final values. Rounds are counted,
not timed, so the numbers do not depend on how busy the machine is.

    .venv/bin/python bench/algorithms.py [--rounds 15] [--target 0.6] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import fl_models  # noqa: E402
import torch  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit  # noqa: E402

ALGORITHMS = {
    "fedavg": {},
    "fedprox mu=0.01": {"algorithm": "fedprox", "fedprox_mu": 0.01},
    "fedprox mu=0.1": {"algorithm": "fedprox", "fedprox_mu": 0.1},
    "fedopt sgd lr=1 momentum=0.6": {"algorithm": "fedopt", "fedopt_momentum": 0.6},
    "fedopt adam lr=0.01": {"algorithm": "fedopt", "fedopt_optimizer": "adam"},
    "scaffold": {"algorithm": "scaffold"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--target", type=float, default=0.6)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    rounds = 2 if args.smoke else args.rounds
    chosen = dict(list(ALGORITHMS.items())[:: 5 if args.smoke else 1])
    torch.manual_seed(0)
    start = fl_models.SmallConvNet8().state_dict()
    spec = capture(fl_models.SmallConvNet8)
    training = TrainingConfig(img_size=16, local_epochs=1, batch_size=16, learning_rate=0.003)
    results: dict = {"rounds": rounds, "target_accuracy": args.target, "sites": 4, "classes_per_site": 2}
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_synthetic_shards(
            Path(tmp) / "shards", n_clients=4, samples_per_client=(120,) * 4, num_classes=8, img_size=16,
            classes_per_client=2, seed=3,
        )
        for name, settings in chosen.items():
            federation = FederationConfig(
                num_rounds=rounds, min_clients=4, wait_time_after_min_received=0, job_name="algorithms", **settings
            )
            job = submit(spec, shards, training=training, federation=federation, initial_weights=start)
            if job.wait(timeout=1800) != "FINISHED":
                results[name] = {"error": job.error}
                continue
            accuracy = [r.validation.get("accuracy") for r in job.rounds]
            loss = [r.validation.get("loss") for r in job.rounds]
            reached = next((i + 1 for i, a in enumerate(accuracy) if a is not None and a >= args.target), None)
            results[name] = {
                "rounds_to_target": reached,
                "final_accuracy": accuracy[-1],
                "final_loss": loss[-1],
                "best_loss": min(v for v in loss if v is not None),
                "accuracy": accuracy,
                "loss": loss,
            }
            print(f"{name:30s} to {args.target}: {reached}  final accuracy {accuracy[-1]:.3f} loss {loss[-1]:.3f}")
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "algorithms.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
