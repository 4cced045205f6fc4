"""Per-round overhead of resontech_nb's generated job against a hand-written NVFlare job of the same model.

Both jobs run in NVFlare's simulator through the same command with 2 clients and a trivial update,
so the time is the framework's. Per-round cost = (T(R_hi) - T(R_lo)) / (R_hi - R_lo), which cancels
the start-up time. Prints a table and writes bench/results/job_overhead.json.

    .venv/bin/python bench/job_overhead.py [--lo 2] [--hi 6] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402
from sim import simulate  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards  # noqa: E402


def ours(rounds: int, shards: list[Path], out: Path) -> Path:
    spec = capture(bench_models.BenchNet, bench_models.bench_train)
    federation = FederationConfig(num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name="ours")
    return build_job(spec, shards, TrainingConfig(img_size=16), federation, out=out)


def hand_written(rounds: int, out: Path) -> Path:
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe

    recipe = FedAvgRecipe(
        name="hand", model=bench_models.BenchNet(), min_clients=2, num_rounds=rounds,
        train_script=str(HERE / "hand_client.py"),
    )
    recipe.export(str(out))
    return out / "hand"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lo", type=int, default=2)
    parser.add_argument("--hi", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    clients = ["site-1", "site-2"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=0)
        for name in ("resontech_nb", "hand_written"):
            times = {}
            for rounds in (args.lo, args.hi):
                runs = []
                for i in range(args.repeat):
                    out = tmp_path / f"{name}-{rounds}-{i}"
                    job = ours(rounds, shards, out) if name == "resontech_nb" else hand_written(rounds, out)
                    runs.append(simulate(job, tmp_path / f"ws-{name}-{rounds}-{i}", len(clients)))
                times[rounds] = min(runs)
            per_round = (times[args.hi] - times[args.lo]) / (args.hi - args.lo)
            results[name] = {"total_s": times, "per_round_s": round(per_round, 3)}
            print(f"{name:14s} T({args.lo})={times[args.lo]:.1f}s T({args.hi})={times[args.hi]:.1f}s "
                  f"per round {per_round:.2f}s")
    results["overhead_per_round_s"] = round(results["resontech_nb"]["per_round_s"]
                                            - results["hand_written"]["per_round_s"], 3)
    print(f"our overhead per round vs hand-written: {results['overhead_per_round_s']:+.2f}s")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "job_overhead.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
