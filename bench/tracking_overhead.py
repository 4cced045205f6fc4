"""What tracking costs a round of the quickstart: the same job with tracking off and on, side by side in one run.

The quickstart's job (3 sites, TinyCNN, 4 classes, 32 x 32 images, 2 epochs, default loop) runs once without
tracking and once logging to TensorBoard and MLflow (a sqlite store, or --mlflow-url for a server), alternating
--repeat times (off/on, then on/off, so that the first job's warm-up falls on both sides). Per job: the median
round (rounds after the first, from the round records), the time from submit to the end of the job and of its
tracking, and the tracker's own time (what its sinks' calls took, in the notebook's process). Prints a table and
writes bench/results/tracking_overhead.json.

    .venv/bin/python bench/tracking_overhead.py [--rounds 4] [--repeat 1] [--mlflow-url http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit  # noqa: E402
from resontech_nb.tracking.base import Sink  # noqa: E402

SINK_TIME = {"s": 0.0}


def _timed(method):
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            SINK_TIME["s"] += time.perf_counter() - started

    return wrapper


def _time_every_sink() -> None:
    """Count the time of every sink call (open, log, tags, finish) into SINK_TIME."""
    from resontech_nb.tracking import REGISTRY

    for cls in REGISTRY.values():
        for name in ("open", "log", "set_tags", "finish", "log_model"):
            if name in cls.__dict__ or name in Sink.__dict__:
                setattr(cls, name, _timed(getattr(cls, name)))


def run(spec, shards, rounds: int, tracking: str, name: str) -> dict:
    SINK_TIME["s"] = 0.0
    started = time.perf_counter()
    job = submit(
        spec,
        shards,
        training=TrainingConfig(img_size=32, local_epochs=2, batch_size=16, learning_rate=0.01),
        federation=FederationConfig(num_rounds=rounds, min_clients=3, wait_time_after_min_received=0, job_name=name,
                                    tracking=tracking),
    )
    status = job.wait(timeout=1200)
    job_s = time.perf_counter() - started
    if job.tracking is not None:
        job.tracking.wait(timeout=300)
    total_s = time.perf_counter() - started
    durations = [r.duration_s for r in job.rounds[1:] if r.duration_s is not None]
    return {
        "status": status,
        "median_round_s": round(statistics.median(durations), 3),
        "rounds_s": [round(d, 3) for d in durations],
        "job_s": round(job_s, 2),
        "job_and_tracking_s": round(total_s, 2),
        "tracker_sink_time_s": round(SINK_TIME["s"], 3),
        "notes": job.notes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--mlflow-url", default="")
    args = parser.parse_args()
    _time_every_sink()
    results: dict[str, list] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        shards = make_synthetic_shards(tmp_path / "shards", n_clients=3, num_classes=4, img_size=32, seed=0)
        spec = capture(bench_models.QuickstartCNN)
        mlflow = args.mlflow_url or f"sqlite:///{tmp_path / 'mlflow.db'}"
        tracking = f"tensorboard:{tmp_path / 'tb'};mlflow:{mlflow}"
        for i in range(args.repeat):
            # off, on, on, off, ...: the first job's warm-up (imports, the first forks) is not always on one side
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                result = run(spec, shards, args.rounds, tracking if mode == "on" else "", f"bench_{mode}")
                results[mode].append(result)
                print(f"{mode:3s} #{i}: median round {result['median_round_s']:.3f}s, job {result['job_s']:.1f}s, "
                      f"job+tracking {result['job_and_tracking_s']:.1f}s, sinks {result['tracker_sink_time_s']:.2f}s")
    off = statistics.median(r["median_round_s"] for r in results["off"])
    on = statistics.median(r["median_round_s"] for r in results["on"])
    summary = {
        "rounds": args.rounds,
        "repeat": args.repeat,
        "tracking": "tensorboard + mlflow " + ("server" if args.mlflow_url else "sqlite"),
        "median_round_off_s": off,
        "median_round_on_s": on,
        "round_overhead_pct": round(100 * (on - off) / off, 1),
        "runs": results,
    }
    print(f"median round: off {off:.3f}s, on {on:.3f}s ({summary['round_overhead_pct']:+.1f} %)")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "tracking_overhead.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
