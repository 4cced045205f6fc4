"""The per-round floor, the start-up and the idle CPU of our generated job in NVFlare's simulator.

- floor: a 4-parameter model whose training does nothing, 2 sites; per round = (T(hi) - T(lo)) / (hi - lo)
  over whole simulator runs, and the median and mean gap between round starts in the server log of the
  longer run (NVFlare's start-up waits in 1 s steps, so whole runs differ by up to a second: at 0.1 s a
  round the gaps are the steadier figure); with our defaults and with NVFlare's own (task_request_interval
  2 s, task_check_period 0.5 s, memory clean-up every round, 2 MB download pieces) for comparison.
- start-up: from the submit call to the first round record, through the local target (what a user waits).
- hand-over side by side: the local target's hand-over of tasks (``targets/local/handover.py``) on and off
  (``RESONTECH_HANDOVER=0``: NVFlare's polling), ``--repeats`` interleaved pairs, median round gap and start-up.
- start-up warm and cold side by side: a warm simulator process (``targets/local/warm.py``, imports done and idle
  before ``submit``) against a cold start (``RESONTECH_WARM=0``), ``--repeats`` interleaved pairs, medians.
- idle CPU: CPU seconds the whole simulator process tree uses per wall second while both sites sleep in
  training (so what is left is polling).

    .venv/bin/python bench/round_floor.py [--lo 3] [--hi 23] [--repeats 3] [--smoke] [--startup-only] [--out FILE]

``--startup-only`` writes only the warm and cold start-up to bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402
from sim import round_durations, simulate  # noqa: E402

from resontech_nb import (  # noqa: E402
    FederationConfig,
    TrainingConfig,
    build_job,
    capture,
    make_synthetic_shards,
    submit,
)
from resontech_nb.targets.local import warm  # noqa: E402
from resontech_nb.targets.local.handover import ENV as HANDOVER_ENV  # noqa: E402

NVFLARE_DEFAULTS = {
    "task_request_interval": 2.0,
    "task_check_period": 0.5,
    "memory_gc_rounds": 1,
    "download_chunk_mb": 2,
}


def floor(
    tmp: Path, shards: list[Path], lo: int | None, hi: int, env: dict[str, str] | None = None, **polling: float
) -> dict:
    """Round gaps of a run of ``hi`` rounds, and with ``lo`` also whole runs of ``lo`` and ``hi`` rounds."""
    spec = capture(bench_models.BenchNet, bench_models.bench_train)
    times = {}
    for rounds in (hi,) if lo is None else (lo, hi):
        federation = FederationConfig(
            num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name="floor", **polling
        )
        job = build_job(spec, shards, TrainingConfig(img_size=16), federation, out=tmp / f"floor-{rounds}-{polling}")
        workspace = tmp / f"ws-{rounds}-{len(polling)}"
        shutil.rmtree(workspace, ignore_errors=True)
        times[rounds] = simulate(job, workspace, env=env)
    gaps = round_durations(tmp / f"ws-{hi}-{len(polling)}")
    return {
        "total_s": times,
        "per_round_s": None if lo is None else round((times[hi] - times[lo]) / (hi - lo), 3),
        # from the server log of the longer run: start-up jitter (NVFlare's 1 s start-up polls) cancels
        "round_gap_median_s": round(statistics.median(gaps), 3),
        "round_gap_mean_s": round(statistics.mean(gaps), 3),
    }


def side_by_side(tmp: Path, shards: list[Path], hi: int, repeats: int) -> dict:
    """The hand-over (``targets/local/handover.py``) on and off, interleaved: round gaps and start-up, medians."""
    runs: dict[str, dict[str, list]] = {"handover": {}, "polled": {}}
    for _ in range(repeats):
        for mode, value in (("handover", "1"), ("polled", "0")):
            got = floor(tmp, shards, None, hi, env={HANDOVER_ENV: value})
            started = with_env(HANDOVER_ENV, value, startup, shards)
            row = runs[mode]
            row.setdefault("round_gap_median_s", []).append(got["round_gap_median_s"])
            for key in ("to_first_round_s", "to_finished_s"):
                row.setdefault(key, []).append(started[key])
    out = {mode: {k: {"runs": v, "median": round(statistics.median(v), 3)} for k, v in row.items()}
           for mode, row in runs.items()}  # fmt: skip
    out["polled_over_handover"] = {
        key: round(out["polled"][key]["median"] / out["handover"][key]["median"], 2) for key in runs["handover"]
    }
    return out


def with_env(name: str, value: str, fn, *args):  # noqa: ANN001, ANN201 - a bench helper
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn(*args)
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def startup(shards: list[Path]) -> dict:
    spec = capture(bench_models.BenchNet, bench_models.bench_train)
    federation = FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name="start")
    started = time.perf_counter()
    job = submit(spec, shards, training=TrainingConfig(img_size=16), federation=federation)
    while not job.rounds:
        time.sleep(0.02)
    first = job.rounds[0]
    first_round = time.perf_counter() - started
    job.wait(timeout=300)
    status = json.loads(next((job.workspace / "server").glob("*/rt_status.json")).read_text())
    return {
        "to_first_round_s": round(first_round, 2),
        "first_round_s": round(first.duration_s or 0.0, 3),
        "before_round_1_s": round(first_round - (first.duration_s or 0.0), 2),
        "to_finished_s": round(time.perf_counter() - started, 2),  # submit to FINISHED, as job.wait sees it
        "server_end_to_finished_s": round(time.time() - status["at"], 2),
    }


def warm_ready(timeout: float = 120.0) -> None:
    """Start the warm process and wait until it has imported and sits idle (its CPU time stops growing), as one
    started at ``%load_ext`` has by the time the user submits."""
    warm.warm_up()
    proc = psutil.Process(warm._idle.proc.pid)
    deadline, last, still = time.monotonic() + timeout, -1.0, 0
    while time.monotonic() < deadline and still < 3:
        time.sleep(0.2)
        used = sum(proc.cpu_times()[:2])
        still = still + 1 if used == last else 0
        last = used


def warm_vs_cold(shards: list[Path], repeats: int) -> dict:
    """Start-up with a warm simulator process ready and with a cold start, interleaved: medians."""
    runs: dict[str, dict[str, list]] = {"cold": {}, "warm": {}}
    for _ in range(repeats):
        for mode in ("cold", "warm"):
            if mode == "warm":
                warm_ready()
                got = startup(shards)
                warm_ready()  # the next one (started at submit) imports after the job: not beside the next run
            else:
                warm.shutdown()
                got = with_env(warm.ENV, "0", startup, shards)
            for key in ("to_first_round_s", "to_finished_s", "before_round_1_s"):
                runs[mode].setdefault(key, []).append(got[key])
    warm.shutdown()
    out = {mode: {k: {"runs": v, "median": round(statistics.median(v), 3)} for k, v in row.items()}
           for mode, row in runs.items()}  # fmt: skip
    out["cold_minus_warm_s"] = {
        key: round(out["cold"][key]["median"] - out["warm"][key]["median"], 3) for key in runs["warm"]
    }
    return out


def idle_cpu(shards: list[Path], sleep_s: float, rounds: int = 3) -> dict:
    spec = capture(bench_models.BenchNet, bench_models.sleeping_train)
    federation = FederationConfig(num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name="idle")
    job = submit(spec, shards, training=TrainingConfig(img_size=16), federation=federation)
    while not job.rounds:  # past start-up
        time.sleep(0.05)
    root = psutil.Process(json.loads((job.state_dir / "state.json").read_text())["pid"])

    def cpu() -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    c0, t0 = cpu(), time.perf_counter()
    time.sleep(sleep_s * 0.8)  # inside round 2: both sites sleep in fl_train_model
    c1, t1 = cpu(), time.perf_counter()
    job.wait(timeout=300)
    return {"cpu_s_per_wall_s": round((c1 - c0) / (t1 - t0), 3), "window_s": round(t1 - t0, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lo", type=int, default=3)
    parser.add_argument("--hi", type=int, default=23)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of the hand-over on and off")
    parser.add_argument("--smoke", action="store_true", help="2 rounds, our defaults only, for CI")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up figures (warm and cold)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/round_floor.json")
    args = parser.parse_args()
    if args.out is None and not args.smoke:
        args.out = HERE / "results" / "round_floor.json"
    lo, hi = (None, 3) if args.smoke else (args.lo, args.hi)  # smoke: one run, its round gaps
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(8, 8), img_size=16)
        if args.startup_only:
            results = {"startup_warm_vs_cold": warm_vs_cold(shards, args.repeats)}
            report(results, args.out.with_name("startup.json") if args.out else None)
            return
        results = {"floor_ours": floor(tmp_path, shards, lo, hi)}
        if not args.smoke:  # 2 s a round
            results["floor_nvflare_defaults"] = floor(tmp_path, shards, lo, hi, **NVFLARE_DEFAULTS)
        if not args.smoke:
            results["handover_side_by_side"] = side_by_side(tmp_path, shards, args.hi, args.repeats)
        results["startup"] = [startup(shards) for _ in range(1 if args.smoke else 3)]
        results["startup_warm_vs_cold"] = warm_vs_cold(shards, 1 if args.smoke else args.repeats)
        results["idle_cpu"] = idle_cpu(shards, bench_models.SLEEP_S, rounds=2 if args.smoke else 3)
    report(results, args.out)


def report(results: dict, out: Path | None) -> None:
    for name, value in results.items():
        print(f"{name:22s} {value}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
