"""Running a built job in NVFlare's simulator from a benchmark, timed (shared by the bench scripts)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def simulator_command(job_dir: Path, workspace: Path, sites: int = 2) -> list[str]:
    clients = ",".join(f"site-{i + 1}" for i in range(sites))
    return [
        sys.executable, "-m", "nvflare.private.fed.app.simulator.simulator", str(job_dir),
        "-w", str(workspace), "-c", clients, "-t", str(sites),
    ]


def simulate(job_dir: Path, workspace: Path, sites: int = 2) -> float:
    """Wall time of one whole simulator run of ``job_dir`` with ``sites`` sites."""
    started = time.perf_counter()
    subprocess.run(
        simulator_command(job_dir, workspace, sites), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started
