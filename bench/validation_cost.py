"""What validating every global model costs per round with the default loop, against training alone.

The same small CNN on the same synthetic shards (2 sites), in NVFlare's simulator: once with the default
``fl_evaluate_model`` (each site evaluates the incoming global model, the last one after the final round)
and once without it. Per round: the median and mean of the gaps between round starts in the server's log
(rounds 1 on), and (T(hi) - T(lo)) / (hi - lo) over whole runs (median of ``--repeats`` runs each),
which cancels start-up but carries the noise of whole runs.

    .venv/bin/python bench/validation_cost.py [--lo 2] [--hi 12] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import fl_models  # noqa: E402
from sim import round_durations, simulate  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards  # noqa: E402

EVAL_BLOCK = re.compile(r"\n\n\ndef fl_evaluate_model\(payload\):\n    return default_evaluate_model\(\w+, payload\)\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lo", type=int, default=2)
    parser.add_argument("--hi", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each length; the median is used")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    lo, hi = (2, 3) if args.smoke else (args.lo, args.hi)
    repeats = 1 if args.smoke else args.repeats
    training = TrainingConfig(img_size=16, local_epochs=1, batch_size=16)
    with_eval = capture(fl_models.SmallConvNet)
    without_eval = capture(fl_models.SmallConvNet)
    without_eval.source, found = EVAL_BLOCK.subn("\n", without_eval.source)
    assert found == 1, "the default evaluation block was not found in model_def.py"
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(200, 200), img_size=16)
        for name, spec in (("train_and_validate", with_eval), ("train_only", without_eval)):
            times, durations = {}, []
            for rounds in (lo, hi):
                federation = FederationConfig(
                    num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name=name
                )
                job = build_job(spec, shards, training, federation, out=tmp_path / f"{name}-{rounds}")
                runs = []
                for i in range(repeats):
                    workspace = tmp_path / f"ws-{name}-{rounds}-{i}"
                    runs.append(simulate(job, workspace))
                    durations += round_durations(workspace)
                times[rounds] = statistics.median(runs)
            results[name] = {
                "per_round_s": round((times[hi] - times[lo]) / (hi - lo), 3),
                "median_round_s": round(statistics.median(durations), 3),
                "mean_round_s": round(statistics.fmean(durations), 3),
                "rounds_timed": len(durations),
                "total_s": times,
            }
            print(f"{name:20s} {results[name]}")
    for key in ("per_round_s", "median_round_s", "mean_round_s"):
        results[f"validation_{key}"] = round(results["train_and_validate"][key] - results["train_only"][key], 3)
    print(
        f"validation costs {results['validation_median_round_s']:+.3f} s a round (median round), "
        f"{results['validation_mean_round_s']:+.3f} s (mean), {results['validation_per_round_s']:+.3f} s (whole runs)"
    )
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "validation_cost.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
