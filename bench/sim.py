"""Running a built job in NVFlare's simulator from a benchmark, timed (shared by the bench scripts)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resontech_nb.targets.local.simulator import simulator_command as launcher_command  # noqa: E402
from resontech_nb.targets.local.target import simulator_env  # noqa: E402


def simulator_command(job_dir: Path, workspace: Path, sites: int = 2, threads: int | None = None) -> list[str]:
    """The local target's simulator command (NVFlare's simulator, start-up polls shortened) for sites site-1..N,
    ``threads`` of them at once (default: the local target's choice)."""
    return launcher_command(job_dir, workspace, [f"site-{i + 1}" for i in range(sites)], threads)


def simulate(job_dir: Path, workspace: Path, sites: int = 2, env: dict[str, str] | None = None) -> float:
    """Wall time of one whole simulator run of ``job_dir`` with ``sites`` sites, in the local target's environment
    (with ``env``'s variables added)."""
    started = time.perf_counter()
    subprocess.run(
        simulator_command(job_dir, workspace, sites),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**simulator_env(sites), **(env or {})},
    )
    return time.perf_counter() - started


def round_durations(workspace: Path) -> list[float]:
    """Seconds between the starts of consecutive rounds, from the server's log of a finished run.

    Round 0 (which includes the sites' start-up) is left out; the last round has no successor. Reads both
    ScatterAndGather's "Round N started." and NVFlare's FedAvg controller's, which puts it on a line of its own
    under the timestamped one.
    """
    import datetime
    import re

    stamps = []
    text = (Path(workspace) / "server" / "log.txt").read_text(encoding="utf-8", errors="replace")
    pattern = r"^(\S+ \S+) - [^\n]*?(?:\n-+\n\s*)?Round (\d+) started"
    for stamp, number in re.findall(pattern, text, flags=re.M):
        stamps.append((int(number), datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")))
    stamps.sort()
    return [(b - a).total_seconds() for (n, a), (_, b) in zip(stamps, stamps[1:], strict=False) if n >= 1]
