"""Many sites on one machine: per-round time and the whole simulator's memory (PSS) at 64 sites, 1 M parameters.

Each setting is one simulator run of ``--rounds`` rounds of our generated job (trivial training): the median gap
between round starts in the server log (round 0, the start, left out), the whole run's wall time, and the peak
of the summed PSS of the simulator's process tree (sampled every 0.5 s; shared pages counted once in all).
``--at-once`` lists how many sites run at once (NVFlare's ``-t``; fewer than the sites: they take turns, each
turn a worker forked by the local target's zygote); ``--handover`` compares the local target's hand-over of
tasks on and off (``RESONTECH_HANDOVER``).

    .venv/bin/python bench/many_sites.py [--sites 64] [--millions 1] [--rounds 3] [--at-once 64] [--handover 1,0]
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

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402
from sim import round_durations, simulator_command  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards  # noqa: E402
from resontech_nb.targets.local.handover import ENV as HANDOVER_ENV  # noqa: E402
from resontech_nb.targets.local.target import simulator_env  # noqa: E402


def tree_pss(pid: int) -> int:
    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def run(job: Path, workspace: Path, sites: int, at_once: int, handover: str) -> dict:
    env = {**simulator_env(at_once), HANDOVER_ENV: handover}
    started = time.perf_counter()
    proc = subprocess.Popen(
        simulator_command(job, workspace, sites, at_once), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(0.5)
    gaps = round_durations(workspace)
    return {
        "sites": sites,
        "at_once": at_once,
        "handover": handover,
        "exit_code": proc.returncode,
        "rounds_started": len(gaps) + 2 if gaps else None,
        "per_round_s": round(statistics.median(gaps), 3) if gaps else None,
        "whole_run_s": round(time.perf_counter() - started, 1),
        "peak_pss_total_mb": round(peak / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=64)
    parser.add_argument("--millions", type=float, default=1.0, help="model size, millions of parameters")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--at-once", default="64", help="comma-separated: sites running at once")
    parser.add_argument("--handover", default="1", help="comma-separated RESONTECH_HANDOVER values, e.g. 1,0")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "many_sites.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        net = bench_models.scaled_net_module(args.millions, tmp_path).ScaledNet
        shards = make_synthetic_shards(
            tmp_path / "shards", n_clients=args.sites, samples_per_client=[4] * args.sites, img_size=8
        )
        federation = FederationConfig(
            num_rounds=args.rounds, min_clients=args.sites, wait_time_after_min_received=0, job_name="many"
        )
        job = build_job(capture(net, bench_models.bench_train), shards, TrainingConfig(img_size=16), federation,
                        out=tmp_path / "job")  # fmt: skip
        for at_once in (int(n) for n in args.at_once.split(",") if n):
            for handover in (h for h in args.handover.split(",") if h):
                row = run(job, tmp_path / f"ws-{at_once}-{handover}", args.sites, at_once, handover)
                rows.append(row)
                print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"millions": args.millions, "rounds": args.rounds, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
