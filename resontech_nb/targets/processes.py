"""Finding and stopping the processes a job or deployment started (simulator, POC server and clients)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil


def processes_using(path: str | Path) -> list[psutil.Process]:
    """Every process whose command line mentions ``path`` (a job's workspace, a POC workspace)."""
    needle = str(path)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(needle in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def terminate(proc: psutil.Process, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a process already gone is fine."""
    stop_all([proc], grace)


def stop_all(procs: list[psutil.Process], grace: float = 5.0) -> None:
    """SIGTERM every one of ``procs`` at once, then SIGKILL those left after ``grace`` seconds."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _kill_left(procs, grace)


def _kill_left(procs: list[psutil.Process], grace: float) -> None:
    """SIGKILL those of ``procs`` still there after ``grace`` seconds (without waiting for them to be reaped)."""
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def stop_process_group(pid: int, create_time: float | None = None, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``grace`` seconds.

    ``create_time`` guards against a pid that was reused by an unrelated process.
    """
    try:
        leader = psutil.Process(pid)
        if create_time and abs(leader.create_time() - create_time) > 1:
            return
        members = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        members = []
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    _kill_left(members, grace)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
