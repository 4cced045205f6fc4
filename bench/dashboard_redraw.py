"""Dashboard redraw time at 50 clients x 100 rounds.

A full redraw is what the live dashboard does when a job's records or status change: one matplotlib
drawing encoded twice (the composed PNG kept in the notebook, and the widget's chart image cropped
from it), the widget update (HTML participation grid, status traits) and the text summary.
Each repetition alternates between two snapshots so every redraw really changes something.

Prints a table and writes bench/results/dashboard_redraw.json.   .venv/bin/python bench/dashboard_redraw.py
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from resontech_nb.dashboard import Dashboard, DashboardSnapshot, render_text  # noqa: E402
from resontech_nb.dashboard.plots import render_pictures  # noqa: E402
from resontech_nb.dashboard.widgets import grid_html  # noqa: E402
from resontech_nb.job import Job, JobState  # noqa: E402
from resontech_nb.records import ClientRound, RoundRecord  # noqa: E402


def synthetic_rounds(n_clients: int, n_rounds: int, seed: int = 7) -> tuple[list[str], list[RoundRecord]]:
    """Decaying losses with noise; about 5% failed and 7% absent client-rounds."""
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
                parts[name] = ClientRound("ok", loss=loss, samples=rng.randint(50, 500))
        duration = 2.0 + 3.0 * rng.random()
        rounds.append(RoundRecord(r, n_rounds, 2.0 * 0.95**r + 0.05, parts, t, t + duration))
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

    def _fetch_result(self) -> dict:
        return {}

    def _abort(self) -> None:
        pass


def stats(samples_s: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1), "min_ms": round(ms[0], 1),
            "n": len(ms)}  # fmt: skip


def timed(fn, repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dashboard_redraw.json")
    args = parser.parse_args()

    clients, rounds = synthetic_rounds(args.clients, args.rounds)
    job = SyntheticJob(clients, rounds)
    dashboard = Dashboard(job, widgets=True)  # real widgets; without a kernel their comms go nowhere
    dashboard.refresh()  # warm-up: fonts, figure caches

    def full_redraw(i: int) -> None:
        job.visible = args.rounds - 1 + (i % 2)  # alternate 99 / 100 finished rounds: every poll is a change
        assert dashboard.refresh(), "the snapshot should have changed"

    snaps = []
    for visible in (args.rounds - 1, args.rounds):
        job.visible = visible
        snaps.append(DashboardSnapshot("RUNNING", args.rounds, tuple(clients), tuple(rounds[:visible])))

    results = {
        "clients": args.clients,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "full_redraw": stats(timed(full_redraw, args.repeat)),
        "parts": {
            "pictures": stats(timed(lambda i: render_pictures(snaps[i % 2]), args.repeat)),
            "widget_grid_html": stats(timed(lambda i: grid_html(snaps[i % 2]), args.repeat)),
            "text": stats(timed(lambda i: render_text(snaps[i % 2]), args.repeat)),
        },
    }
    data, metadata = dashboard.mimebundle()
    results["display_output_bytes"] = {
        "image_png_base64": len(data["image/png"]),
        "text_plain": len(data["text/plain"]),
        "metadata_records_json": len(json.dumps(metadata)),
        "grid_html": len(dashboard.view.grid.value),
    }

    print(f"dashboard redraw, {args.clients} clients x {args.rounds} rounds, {args.repeat} repetitions")
    print(f"{'what':<20}{'median ms':>12}{'p95 ms':>10}")
    rows = {"full redraw": results["full_redraw"], **{k.replace("_", " "): v for k, v in results["parts"].items()}}
    for name, value in rows.items():
        print(f"{name:<20}{value['median_ms']:>12.1f}{value['p95_ms']:>10.1f}")
    print("display output bytes:", results["display_output_bytes"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
