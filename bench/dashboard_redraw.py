"""Dashboard redraw time at 50 clients x 100 rounds (training loss and accuracy, validation of each round).

``redraw`` is what the live dashboard does when a job's records change: a new round arrived (the
repetitions alternate between 99 and 100 finished rounds, so every one really changes something).
It covers the widget update (traits, status line, the training and validation charts, durations,
participation grid, failures, each part redrawn and re-encoded only if its data changed) and the
text summary. The composed static picture kept in the notebook is republished at most every
``Dashboard.publish_interval`` seconds, so it is measured on its own (``static_picture``), as are
switching the metric dropdown and the first draw of a new dashboard (figures built, fonts loaded).

Prints a table and writes bench/results/dashboard_redraw.json.   .venv/bin/python bench/dashboard_redraw.py
Smoke run (small sizes, writes nothing unless --out is given): .venv/bin/python bench/dashboard_redraw.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from resontech_nb.dashboard import Dashboard, DashboardPictures, DashboardSnapshot, render_text  # noqa: E402
from resontech_nb.job.handle import Job, JobState  # noqa: E402
from resontech_nb.records.rounds import ClientRound, RoundRecord  # noqa: E402


def synthetic_rounds(n_clients: int, n_rounds: int, seed: int = 7) -> tuple[list[str], list[RoundRecord]]:
    """Decaying losses, rising accuracy, validation of every global model; about 5% failed and 7% absent."""
    rng = random.Random(seed)
    clients = [f"site-{i + 1}" for i in range(n_clients)]
    rounds, t = [], 1_700_000_000.0
    for r in range(n_rounds):
        parts = {}
        for i, name in enumerate(clients):
            u = rng.random()
            if u < 0.05:
                parts[name] = ClientRound("failed", error="worker lost")
            elif u < 0.12:
                parts[name] = ClientRound("absent")
            else:
                loss = 2.0 * 0.95**r + 0.15 * rng.random() + 0.01 * i
                accuracy = 1.0 - 0.7 * 0.96**r - 0.05 * rng.random()
                val = {"loss": loss * 1.1, "accuracy": accuracy - 0.03}
                parts[name] = ClientRound("ok", loss=loss, samples=rng.randint(50, 500),
                                          metrics={"loss": loss, "accuracy": accuracy}, validation=val,
                                          validation_samples=rng.randint(10, 100))  # fmt: skip
        duration = 2.0 + 3.0 * rng.random()
        record = RoundRecord.from_dict(
            {
                "round": r,
                "num_rounds": n_rounds,
                "clients": {n: asdict(c) for n, c in parts.items()},
                "started_at": t,
                "finished_at": t + duration,
            }  # fmt: skip
        )  # round metrics and validation are the records' own sample-weighted means
        rounds.append(record)
        t += duration + 0.5
    return clients, rounds


class SyntheticJob(Job):
    """A job that shows the given records; the benchmark switches what it returns between redraws."""

    target = "synthetic"

    def __init__(self, clients: list[str], rounds: list[RoundRecord]) -> None:
        super().__init__("bench-job", num_rounds=len(rounds), clients=clients, name="redraw benchmark")
        self.all_rounds = rounds
        self.visible = len(rounds)

    def _poll(self) -> JobState:
        return JobState("RUNNING")

    def _fetch_rounds(self) -> list[RoundRecord]:
        return self.all_rounds[: self.visible]

    def _fetch_result(self, which: str = "final") -> dict:
        return {}

    def _abort(self) -> None:
        pass


def stats(samples: list[tuple[float, float]]) -> dict:
    """Wall-clock median/p95/min and the median CPU time of this process (less disturbed by other load)."""
    ms = sorted(wall * 1000 for wall, _ in samples)
    cpu = sorted(c * 1000 for _, c in samples)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1), "min_ms": round(ms[0], 1),
            "cpu_median_ms": round(statistics.median(cpu), 1), "n": len(ms)}  # fmt: skip


def timed(fn, repeat: int) -> list[tuple[float, float]]:
    out = []
    for i in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(i)
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--smoke", action="store_true", help="3 clients x 5 rounds, 3 repetitions")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/dashboard_redraw.json")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.rounds, args.repeat = 3, 5, 3
    elif args.out is None:
        args.out = HERE / "results" / "dashboard_redraw.json"

    clients, rounds = synthetic_rounds(args.clients, args.rounds)
    job = SyntheticJob(clients, rounds)
    job._evaluation = {"best_round": args.rounds // 2}

    start = time.perf_counter()
    dashboard = Dashboard(job, widgets=True)  # real widgets; without a kernel their comms go nowhere
    dashboard.refresh()
    first_draw = time.perf_counter() - start

    def redraw(i: int) -> None:
        job.visible = args.rounds - 1 + (i % 2)  # alternate 99 / 100 finished rounds: every poll is a change
        assert dashboard.refresh(), "the snapshot should have changed"

    def switch_metric(i: int) -> None:
        dashboard.view.metric = ("accuracy", "loss")[i % 2]

    snaps = [
        DashboardSnapshot("RUNNING", args.rounds, tuple(clients), tuple(rounds[:visible]), best_round=args.rounds // 2)
        for visible in (args.rounds - 1, args.rounds)
    ]
    pictures = DashboardPictures()
    pictures.compose(snaps[0])

    results = {
        "clients": args.clients,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "redraw": stats(timed(redraw, args.repeat)),
        "parts": {
            "text": stats(timed(lambda i: render_text(snaps[i % 2]), args.repeat)),
            "static_picture": stats(timed(lambda i: pictures.compose(snaps[i % 2]), args.repeat)),
            "metric_switch": stats(timed(switch_metric, args.repeat)),
        },
        "first_draw_ms": round(first_draw * 1000, 1),
        "publish_interval_s": Dashboard.publish_interval,
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine while this ran
    }
    data, metadata = dashboard.mimebundle()
    results["display_output_bytes"] = {
        "image_png_base64": len(data["image/png"]),
        "text_plain": len(data["text/plain"]),
        "metadata_records_json": len(json.dumps(metadata)),
        "widget_images_png": {k: len(dashboard.pictures.png(k) or b"") for k in ("train", "val", "durations", "grid")},
    }

    print(f"dashboard redraw, {args.clients} clients x {args.rounds} rounds, {args.repeat} repetitions")
    print(f"{'what':<20}{'median ms':>12}{'p95 ms':>10}{'cpu ms':>10}")
    rows = {"redraw": results["redraw"], **{k.replace("_", " "): v for k, v in results["parts"].items()}}
    for name, value in rows.items():
        print(f"{name:<20}{value['median_ms']:>12.1f}{value['p95_ms']:>10.1f}{value['cpu_median_ms']:>10.1f}")
    print(f"first draw {results['first_draw_ms']} ms; static picture republished at most every "
          f"{Dashboard.publish_interval} s while running")  # fmt: skip
    print("display output bytes:", results["display_output_bytes"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
