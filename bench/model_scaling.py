"""Per-round time and peak memory against model size and number of sites: our job and a hand-written one.

Both run in NVFlare's simulator with a trivial update (add 0.01 to every weight), so the time is moving
and averaging the weights. Per round = (T(hi) - T(lo)) / (hi - lo) over whole runs (start-up cancels).
Peak memory: the largest resident set of any one simulator process (server or a site's worker, told apart
by the folder they work in), sampled every 0.1 s, and on Linux also its proportional set size (PSS: pages
shared with other processes, e.g. torch's libraries or a forked worker's parent's, count as their share).
The yardstick: one ``torch.save`` + ``torch.load`` of the model's state_dict.

    .venv/bin/python bench/model_scaling.py [--sizes 1,11,45,100] [--sites 2,4,8,16] [--smoke] [--out FILE]

``--nvflare-transport-too`` adds our job with its weights through NVFlare's transport (``RESONTECH_SHM_WEIGHTS=0``)
beside the local target's default (shared memory), run in turn with it.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_models  # noqa: E402
from sim import round_durations, simulator_command, simulator_env  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, build_job, capture, make_synthetic_shards  # noqa: E402
from resontech_nb.targets.local.simulator import SHM_ENV  # noqa: E402

NO_SHM = "resontech_nb_nvflare_transport"  # our job, weights through NVFlare's transport instead of shared memory


def pss_bytes(pid: int) -> int:
    """A process's proportional set size (Linux's smaps_rollup); 0 where the kernel does not give it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_simulator(
    job_dir: Path, workspace: Path, sites: int, env: dict[str, str] | None = None
) -> tuple[float, dict[str, int]]:
    """Wall time of a whole simulator run, and the peak RSS (and PSS) of the server and of the largest site."""
    command = simulator_command(job_dir, workspace, sites)
    peaks = {"server": 0, "site": 0, "site_pss": 0}
    started = time.perf_counter()
    environment = {**simulator_env(sites), **(env or {})}
    output = open(Path(workspace).parent / f"{Path(workspace).name}.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)  # the server runs in one of the simulator's own processes
        while not done.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:  # a child that ended while it was being listed
                processes = [root]
            for p in processes:
                try:  # a site's worker (NVFlare's, or ours, forked or started) works in its own folder
                    role = "site" if Path(p.cwd()).name.startswith("site-") else "server"
                    peaks[role] = max(peaks[role], p.memory_info().rss)
                    if role == "site":
                        peaks["site_pss"] = max(peaks["site_pss"], pss_bytes(p.pid))
                except psutil.Error:
                    pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    output.close()
    if rc != 0:
        tail = Path(output.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"simulator failed ({rc}) for {job_dir}; the end of its output:\n{tail}")
    return elapsed, peaks


def save_load_s(model: torch.nn.Module) -> float:
    state = model.state_dict()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
        best = min(best, time.perf_counter() - started)
    return best


CHUNK_MB: float | None = None  # --download-chunk-mb: FederationConfig's download_chunk_mb for our job


def our_job(tmp: Path, shards: list[Path], rounds: int, tag: str, net: type) -> Path:
    spec = capture(net, bench_models.bench_train)
    pieces = {} if CHUNK_MB is None else {"download_chunk_mb": CHUNK_MB}
    federation = FederationConfig(
        num_rounds=rounds, min_clients=len(shards), wait_time_after_min_received=0, job_name="ours", **pieces
    )
    return build_job(spec, shards, TrainingConfig(img_size=16), federation, out=tmp / f"ours-{tag}-{rounds}")


def hand_job(tmp: Path, sites: int, rounds: int, tag: str, net: type) -> Path:
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe

    out = tmp / f"hand-{tag}-{rounds}"
    recipe = FedAvgRecipe(
        name="hand", model=net(), min_clients=sites, num_rounds=rounds,
        train_script=str(HERE / "hand_client.py"),
    )
    recipe.export(str(out))
    return out / "hand"


BOTH = ("resontech_nb", "hand_written")


def per_round(
    tmp: Path, sites: int, lo: int | None, hi: int, tag: str, net: type, jobs: tuple[str, ...] = BOTH
) -> dict:
    """Round gaps of a run of ``hi`` rounds, and with ``lo`` also whole runs of ``lo`` and ``hi`` rounds."""
    shards = make_synthetic_shards(tmp / f"shards-{sites}", n_clients=sites, samples_per_client=[4] * sites,
                                   img_size=8)
    out: dict = {}
    for name in jobs:
        times, peaks = {}, []
        for rounds in (hi,) if lo is None else (lo, hi):
            if name in ("resontech_nb", NO_SHM):
                job = our_job(tmp, shards, rounds, tag, net)
            else:
                job = hand_job(tmp, sites, rounds, tag, net)
            workspace = tmp / f"ws-{name}-{tag}-{rounds}"
            env = {SHM_ENV: "0"} if name == NO_SHM else None
            times[rounds], peak = run_simulator(job, workspace, sites, env)
            peaks.append(peak)
        gaps = round_durations(workspace)  # of the longer run: NVFlare's 1 s start-up steps cancel
        out[name] = {
            "per_round_s": round(statistics.median(gaps), 3) if gaps else None,
            "whole_runs_per_round_s": None if lo is None else round((times[hi] - times[lo]) / (hi - lo), 3),
            "peak_rss_server_mb": round(max(p["server"] for p in peaks) / 1e6, 1),
            "peak_rss_site_mb": round(max(p["site"] for p in peaks) / 1e6, 1),
            "peak_pss_site_mb": round(max(p["site_pss"] for p in peaks) / 1e6, 1),
            "total_s": {k: round(v, 2) for k, v in times.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,11,45,100", help="millions of parameters")
    parser.add_argument("--sites", default="2,4,8,16")
    parser.add_argument("--lo", type=int, default=1)
    parser.add_argument("--hi", type=int, default=4)
    parser.add_argument("--download-chunk-mb", type=float, default=None, help="our job's piece size (default: ours)")
    parser.add_argument("--ours-only", action="store_true", help="leave out the hand-written job")
    parser.add_argument(
        "--nvflare-transport-too", action="store_true", help="also our job with RESONTECH_SHM_WEIGHTS=0"
    )
    parser.add_argument("--smoke", action="store_true", help="1 M parameters, 2 sites, for CI")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/model_scaling.json")
    args = parser.parse_args()
    global CHUNK_MB
    CHUNK_MB = args.download_chunk_mb
    jobs = ("resontech_nb",) if args.ours_only else BOTH
    if args.nvflare_transport_too:
        jobs = (*jobs, NO_SHM)
    if args.out is None and not args.smoke:
        args.out = HERE / "results" / "model_scaling.json"
    sizes = [1] if args.smoke else [int(s) for s in args.sizes.split(",")]
    site_counts = [] if args.smoke else [int(s) for s in args.sites.split(",") if s]  # 2 sites at 1 M is by_size
    lo, hi = (None, 3) if args.smoke else (args.lo, args.hi)  # smoke: one run each, its round gaps
    results: dict = {"by_size": {}, "by_sites": {}, "download_chunk_mb": CHUNK_MB}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # a site's resident size with a 260-parameter model: the interpreter, torch and NVFlare
        baseline = per_round(tmp_path, 2, lo, hi, "tiny", bench_models.BenchNet, jobs=("resontech_nb",))["resontech_nb"]
        results["baseline_tiny_model"] = baseline
        print(f"tiny model: {baseline}")
        for millions in sizes:
            net = bench_models.scaled_net_module(millions, tmp_path).ScaledNet
            model = net()
            params = sum(p.numel() for p in model.parameters())
            row = per_round(tmp_path, 2, lo, hi, f"m{millions}", net, jobs)
            row.update(params=params, model_mb=round(params * 4 / 1e6, 1), save_load_s=round(save_load_s(model), 3))
            row["ours_per_round_over_save_load"] = round(row["resontech_nb"]["per_round_s"] / row["save_load_s"], 1)
            if NO_SHM in row:
                row["nvflare_transport_per_round_over_save_load"] = round(
                    row[NO_SHM]["per_round_s"] / row["save_load_s"], 1
                )
            ours = row["resontech_nb"]
            row["ours_site_peak_over_model"] = round(ours["peak_rss_site_mb"] / row["model_mb"], 2)
            row["ours_site_peak_above_tiny_over_model"] = round(
                (ours["peak_rss_site_mb"] - baseline["peak_rss_site_mb"]) / row["model_mb"], 2
            )
            row["ours_site_pss_over_model"] = round(ours["peak_pss_site_mb"] / row["model_mb"], 2)
            results["by_size"][f"{millions}M"] = row
            print(f"{millions:>4} M params: {row}")
        small = bench_models.scaled_net_module(1, tmp_path).ScaledNet
        for sites in site_counts:
            row = per_round(tmp_path, sites, lo, hi, f"s{sites}", small, jobs)
            results["by_sites"][str(sites)] = row
            print(f"{sites:>4} sites: {row}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
