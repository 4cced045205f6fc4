"""Side by side with Flower's simulation engine: the same shapes, interleaved runs, timed from outside the same way.

Our side goes through the public API (``resontech_nb.submit`` on the local target, default settings); Flower's side
is ``bench/flower_side.py`` run by Flower's own venv (``bench/flower_venv.sh``), ``flwr.simulation.run_simulation``
with a FedAvg strategy. Both train the same model class with the same trivial update (add 0.01 to every weight),
every site in every round, and stamp each round's start and end with ``time.time()`` on the server (our round
records; Flower's strategy's ``configure_fit`` / ``aggregate_fit``). Per round = the median gap between round
starts, the first round (which includes the sites' start) left out.

- a, round floor: ``BenchNet`` (2,212 parameters), 2 sites, a run of ``--hi`` rounds (median gap) and whole runs
  (T(hi) - T(2)) / (hi - 2), T from the call (``submit`` / ``run_simulation``) to the job's end.
- b, start-up: the 2-round run of a: the call to the first round's end, and to the job's end (ours: FINISHED as
  ``job.wait`` sees it, polled every 0.05 s; Flower: ``run_simulation`` returning).
- c, large model: ``ScaledNet`` of 45 M parameters, 2 sites, ``--large-rounds`` rounds, with one ``torch.save`` +
  ``torch.load`` of its state_dict as yardstick.
- d, many sites: ``ScaledNet`` of 1 M parameters, 64 sites, ``--many-rounds`` rounds, and the peak of the summed
  PSS of the whole process tree (ours: the simulator and its sites; Flower: the process that calls
  ``run_simulation``, which also runs its ServerApp, and Ray's GCS, raylet and workers under it), sampled every
  0.5 s from smaps_rollup. PSS is sampled in c too.

For each repeat, Flower runs first in odd repeats and ours first in even ones.

    .venv/bin/python bench/flower_side_by_side.py [--repeats 3] [--only a,b,c,d] [--smoke]
        [--flower-python /tmp/flwr-venv/bin/python] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402
from model_scaling import pss_bytes, save_load_s  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit  # noqa: E402

DEFAULT_FLOWER_PYTHON = "/tmp/flwr-venv/bin/python"
LO = 2  # the short run of a is b's 2-round job
SIDES = ("flower", "ours")


class PeakPss:
    """The peak of the summed PSS of a process and all its descendants, sampled every ``period`` s in a thread."""

    def __init__(self, pid: int | None, period: float = 0.5) -> None:
        self.pid, self.period = pid, period
        self.peak, self.processes, self.root_at_peak = 0, 0, 0
        self.names: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakPss:
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            each = [pss_bytes(p.pid) for p in procs]
            if sum(each) > self.peak:
                self.peak, self.processes, self.root_at_peak = sum(each), len(procs), each[0]
                self.names = sorted({_name(p) for p in procs})
            self._done.wait(self.period)

    def summary(self) -> dict:
        # the root: ours NVFlare's simulator's main process; Flower's the caller of run_simulation (runs its server)
        return {
            "peak_pss_tree_mb": round(self.peak / 2**20),
            "root_pss_at_peak_mb": round(self.root_at_peak / 2**20),
            "processes_at_peak": self.processes,
            "process_names_at_peak": self.names,
        }


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def figures(rounds: list[dict], called_at: float, ended_at: float, sites: int, asked: int) -> dict:
    """Per-round and start-up figures from server-side round stamps (epoch seconds) of one run."""
    rounds = sorted(rounds, key=lambda r: r["round"])
    starts = [r["started_at"] for r in rounds if r.get("started_at")]
    gaps = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]  # the first round (sites' start) left out
    first_end = rounds[0].get("finished_at") if rounds else None
    return {
        "rounds_done": len(rounds),
        "rounds_asked": asked,
        "sites": sites,
        "round_gap_median_s": round(statistics.median(gaps), 4) if gaps else None,
        "round_gaps_s": [round(g, 4) for g in gaps],
        "to_first_round_end_s": round(first_end - called_at, 3) if first_end else None,
        "before_round_1_s": round(starts[0] - called_at, 3) if starts else None,
        "total_s": round(ended_at - called_at, 3),
    }


FLOWER_CPUS_PER_CLIENT = 1.0  # --flower-cpus-per-client: Ray CPUs per client (1: two at once on 2 cores)
RUN_TIMEOUT_S = 600.0  # --run-timeout: a run still going after this is stopped and recorded as failed


class RunFailed(Exception):
    """One run did not finish: recorded in the JSON, the bench goes on."""


def run_flower(flower_python: str, tmp: Path, rounds: int, sites: int, millions: float, sample: bool) -> dict:
    out = tmp / f"flower-{rounds}-{sites}-{millions}.json"
    out.unlink(missing_ok=True)
    command = [
        flower_python,
        str(HERE / "flower_side.py"),
        "--rounds",
        str(rounds),
        "--sites",
        str(sites),
        "--millions",
        str(millions),
        "--cpus-per-client",
        str(FLOWER_CPUS_PER_CLIENT),
        "--out",
        str(out),
    ]
    log_path = tmp / f"{out.stem}.log"
    popen_at = time.time()
    with open(log_path, "wb") as log_file:
        # its own session: Ray's GCS, raylet and workers go with it if it has to be stopped
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=_flower_env(), start_new_session=True
        )
        with PeakPss(proc.pid if sample else None) as peak:
            try:
                code = proc.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RunFailed(f"Flower's run still going after {RUN_TIMEOUT_S:g} s: stopped") from None
    exited_at = time.time()
    if code != 0 or not out.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RunFailed(f"Flower's run failed (exit {code}); its output ends with:\n{tail}")
    got = json.loads(out.read_text())
    row = figures(got["rounds"], got["called_at"], got["returned_at"], sites, rounds)
    row.update(
        rounds_complete=got["rounds_complete"],
        params=got["params"],
        process_start_to_call_s=round(got["called_at"] - got["process_start"], 3),  # interpreter, flwr, torch
        popen_to_exit_s=round(exited_at - popen_at, 3),
        backend_config=got["backend_config"],
    )
    if sample:
        row.update(peak.summary())
    return row


def _flower_env() -> dict[str, str]:
    env = dict(os.environ, RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0", FLWR_TELEMETRY_ENABLED="0")
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):  # the project's venv must not leak into Flower's
        env.pop(name, None)
    return env


def run_ours(tmp: Path, shards: list[Path], rounds: int, net: type, sample: bool) -> dict:
    spec = capture(net, bench_models.bench_train)
    federation = FederationConfig(
        num_rounds=rounds, min_clients=len(shards), wait_time_after_min_received=0, job_name="side"
    )
    called_at = time.time()
    job = submit(spec, shards, training=TrainingConfig(img_size=16), federation=federation)
    job.poll_interval = 0.05  # FINISHED as soon as the job's state says so, not a second later
    with PeakPss(job.pid if sample else None) as peak:
        try:
            status = job.wait(timeout=RUN_TIMEOUT_S, progress=False)
        except TimeoutError:
            done = len(job.rounds)
            job.abort()
            raise RunFailed(f"our job still running after {RUN_TIMEOUT_S:g} s ({done} rounds done): aborted") from None
    ended_at = time.time()
    if status != "FINISHED":
        raise RunFailed(f"our job ended {status}: {job.error}")
    records = [{"round": r.round, "started_at": r.started_at, "finished_at": r.finished_at} for r in job.rounds]
    row = figures(records, called_at, ended_at, len(shards), rounds)
    row["rounds_complete"] = sum(1 for r in job.rounds if len(r.participants) == len(shards))
    if sample:
        row.update(peak.summary())
    return row


def shapes(smoke: bool, hi: int, large_rounds: int, many_rounds: int) -> dict[str, dict]:
    return {
        "a": {"sites": 2, "millions": 0, "rounds": [LO, 3 if smoke else hi], "sample": False},
        "b": {"sites": 2, "millions": 0, "rounds": [LO], "sample": False},
        "c": {"sites": 2, "millions": 1 if smoke else 45, "rounds": [3 if smoke else large_rounds], "sample": True},
        "d": {"sites": 4 if smoke else 64, "millions": 1, "rounds": [3 if smoke else many_rounds], "sample": True},
    }


def summarise(name: str, runs: dict[str, list[dict]], long_rounds: int) -> dict:
    """Medians over repeats of each side's figures for shape ``name`` (failed runs are not among ``runs``)."""

    def med(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 4) if values else None

    out: dict = {}
    for side in SIDES:
        rows = runs.get(side, [])
        longest = [r for r in rows if r["rounds_asked"] == long_rounds]
        short = [r for r in rows if r["rounds_asked"] == LO]
        fig: dict = {}
        if name in ("a", "c", "d"):
            fig["per_round_median_gap_s"] = med([r["round_gap_median_s"] for r in longest])
        if name == "a":  # the long and the short run of the same repeat
            short_of = {r["repeat"]: r for r in short}
            per = [(lg["total_s"] - short_of[lg["repeat"]]["total_s"]) / (long_rounds - LO)
                   for lg in longest if lg["repeat"] in short_of]  # fmt: skip
            fig["per_round_whole_runs_s"] = med(per)
        if name in ("a", "b"):
            fig["to_first_round_end_s"] = med([r["to_first_round_end_s"] for r in short])
            fig["two_round_job_total_s"] = med([r["total_s"] for r in short])
        if name in ("c", "d"):
            fig["peak_pss_tree_mb"] = med([r.get("peak_pss_tree_mb") for r in longest])
            fig["total_s"] = med([r["total_s"] for r in longest])
        out[side] = fig
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", default="a,b,c,d", help="comma-separated shapes: a floor, b start-up, c 45 M, d 64 sites"
    )
    parser.add_argument("--hi", type=int, default=15, help="rounds of a's long run")
    parser.add_argument("--large-rounds", type=int, default=6, help="rounds of c's run")
    parser.add_argument("--many-rounds", type=int, default=4, help="rounds of d's run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat (figures are not measurements)")
    parser.add_argument("--flower-python", default=DEFAULT_FLOWER_PYTHON, help="python of Flower's own venv")
    parser.add_argument(
        "--flower-cpus-per-client", type=float, default=1.0, help="Ray CPUs per Flower client (Flower's default: 2)"
    )
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds before a run counts as failed")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/flower_side_by_side.json")
    args = parser.parse_args()
    global FLOWER_CPUS_PER_CLIENT, RUN_TIMEOUT_S
    FLOWER_CPUS_PER_CLIENT = args.flower_cpus_per_client
    RUN_TIMEOUT_S = args.run_timeout
    if not Path(args.flower_python).is_file():
        sys.exit(
            f"no Flower python at {args.flower_python}: make Flower's venv with `bash bench/flower_venv.sh` "
            "(or pass --flower-python PATH to one with flwr[simulation] 1.42 and torch)"
        )
    probe = subprocess.run(
        [
            args.flower_python,
            "-c",
            "import flwr, torch, ray; print(flwr.__version__, torch.__version__, ray.__version__)",
        ],
        capture_output=True,
        text=True,
        env=_flower_env(),
    )
    if probe.returncode != 0:
        sys.exit(
            f"{args.flower_python} cannot import flwr, torch and ray: re-make it with `bash bench/flower_venv.sh`"
            f"\n{probe.stderr[-1000:]}"
        )
    repeats = 1 if args.smoke else args.repeats
    only = [s for s in args.only.split(",") if s]
    table = shapes(args.smoke, args.hi, args.large_rounds, args.many_rounds)
    if unknown := [s for s in only if s not in table]:
        sys.exit(f"unknown shape(s) {unknown}: --only takes a comma-separated subset of a,b,c,d")
    if args.out is None and not args.smoke:
        args.out = HERE / "results" / "flower_side_by_side.json"
    import nvflare
    import torch

    import resontech_nb

    flwr_version, flower_torch, ray_version = probe.stdout.split()
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke,
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": os.getloadavg()},
        "versions": {
            "flwr": flwr_version,
            "flower_torch": flower_torch,
            "ray": ray_version,
            "nvflare": nvflare.__version__,
            "torch": torch.__version__,
            "resontech_nb": getattr(resontech_nb, "__version__", "?"),
        },
        "shapes": {name: table[name] for name in only},
        "save_load_s": {},
        "runs": {name: {side: [] for side in SIDES} for name in only},
        "failed": [],
    }
    started = time.perf_counter()
    # a and b share the 2-round runs: run each (shape, rounds) once per repeat and side
    plan: dict[tuple[int, float, int, bool], list[str]] = {}
    for name in only:
        spec = table[name]
        for rounds in spec["rounds"]:
            plan.setdefault((spec["sites"], spec["millions"], rounds, spec["sample"]), []).append(name)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["RESONTECH_NB_HOME"] = str(tmp_path / "home")  # our jobs' state: gone with the bench
        nets: dict[float, type] = {}
        for _sites, millions, _rounds, _sample in plan:
            if millions not in nets:
                nets[millions] = (
                    bench_models.scaled_net_module(millions, tmp_path).ScaledNet if millions else bench_models.BenchNet
                )
        # the yardstick of c, measured in every repeat just before c's runs (a busy machine slows it as well)
        yardsticks = {table["c"]["millions"]: nets[table["c"]["millions"]]()} if "c" in only else {}
        shard_sets = {
            sites: make_synthetic_shards(
                tmp_path / f"shards-{sites}", n_clients=sites, samples_per_client=[4] * sites, img_size=8
            )
            for sites in {key[0] for key in plan}
        }
        for repeat in range(repeats):
            order = SIDES if repeat % 2 == 0 else SIDES[::-1]
            for (sites, millions, rounds, sample), names in plan.items():
                if "c" in names and millions in yardsticks:
                    runs = results["save_load_s"].setdefault(f"{millions:g}M", {"runs": []})["runs"]
                    runs.append(round(save_load_s(yardsticks[millions]), 4))
                for side in order:
                    print(
                        f"repeat {repeat + 1}/{repeats} {side:6s} {sites} sites {millions:g} M {rounds} rounds",
                        end=" ",
                        flush=True,
                    )
                    try:
                        if side == "flower":
                            row = run_flower(args.flower_python, tmp_path, rounds, sites, millions, sample)
                        else:
                            row = run_ours(tmp_path, shard_sets[sites], rounds, nets[millions], sample)
                    except RunFailed as exc:
                        print(f"FAILED: {exc}", flush=True)
                        failed = {"side": side, "repeat": repeat, "sites": sites, "millions": millions}
                        results["failed"].append({**failed, "rounds": rounds, "why": str(exc)})
                        continue
                    row["repeat"] = repeat
                    print(f"gap {row['round_gap_median_s']} s, total {row['total_s']} s", flush=True)
                    for name in names:
                        results["runs"][name][side].append(row)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    results["summary"] = {name: summarise(name, results["runs"][name], max(table[name]["rounds"])) for name in only}
    for name, summary in results["summary"].items():
        yard = results["save_load_s"].get(f"{table[name]['millions']:g}M") if name == "c" else None
        if yard:
            yard["median"] = yard = round(statistics.median(yard["runs"]), 4)
            for side in SIDES:
                gap = summary[side].get("per_round_median_gap_s")
                summary[side]["per_round_over_save_load"] = round(gap / yard, 2) if gap else None
    print_table(results)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


def print_table(results: dict) -> None:
    print(
        f"\nload average {results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}, "
        f"{results['repeats']} repeat(s), bench {results['bench_wall_s']} s"
    )
    print(f"{'shape':6s} {'figure':28s} {'flower':>10s} {'ours':>10s} {'flower/ours':>12s}")
    for name, summary in results["summary"].items():
        for key in summary["flower"]:
            f, o = summary["flower"].get(key), summary["ours"].get(key)
            ratio = f"{f / o:.2f}" if f and o else "-"
            print(f"{name:6s} {key:28s} {f!s:>10s} {o!s:>10s} {ratio:>12s}")
    for failed in results["failed"]:
        print(f"failed: {failed['side']} repeat {failed['repeat'] + 1}, {failed['sites']} sites, "
              f"{failed['rounds']} rounds: {failed['why'][:200]}")  # fmt: skip


if __name__ == "__main__":
    main()
