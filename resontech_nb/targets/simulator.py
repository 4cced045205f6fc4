"""NVFlare's simulator as the local target starts it: the same runner and site workers, their polls made short.

NVFlare 2.9's simulator runner (``simulator_runner.py``) waits in fixed steps while a job starts: it checks
every 1.0 s whether the server app has started, each client thread sleeps 1 s before its first site, and it
retries the connection to each site's new process every 1.0 s. All three are polls of something that is
usually ready in a fraction of that, so a tiny job spent about 2 s of its start-up in them. Here every
sleep in that module is cut to ``POLL_S``: the simulator notices sooner, it does nothing else differently.
Its server also waits a fixed 0.5 s after starting each listener of its own (``connector_manager.py``,
"to wait for listener ready"); the listener is up in milliseconds here, and nothing connects to it for
another second, so that wait is cut to ``LISTENER_WAIT_S``.

Each site runs in a worker process (``simulator_worker.py``) that, when it asks for the next round's task
before the server has made it, sleeps a fixed 0.5 s before asking again: a round then starts up to 0.5 s
late, and once a site falls into that rhythm it tends to stay there. Before its first task, the site's
client runner (``client_runner.py``) also sleeps 0.5 s before it first asks the server whether the run has
started, which it has. The runner here starts each worker as ``python -m resontech_nb.targets.simulator_site``
instead, NVFlare's worker with the sleeps of both modules cut to ``SITE_POLL_S`` (the same as the job's
default ``task_request_interval``).

The runner starts a site's worker only once its server app is up, and each worker then spends about a
second importing torch and NVFlare before it can connect: a second of start-up in which one of the two cores
waits. So each site's worker is started ahead, as the runner's own process begins: it imports what every
site needs meanwhile, then waits on its stdin for the arguments and environment the runner gives it when it
would have started it (``SiteWorkers.Popen``), and runs from there as that worker. The runner gets the
worker's ``Popen`` as if it had just started it. A worker started ahead that is never needed ends when the
runner does (its stdin closes).

Run as ``python -m resontech_nb.targets.simulator <the arguments of NVFlare's simulator>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

POLL_S = 0.05
LISTENER_WAIT_S = 0.1
SITE_POLL_S = 0.1
NVFLARE_SITE_WORKER = "nvflare.private.fed.app.simulator.simulator_worker"
SITE_WORKER = "resontech_nb.targets.simulator_site"
AHEAD_FLAG = "--ahead"  # simulator_site: import first, then read the worker's arguments from stdin


class ShortPolls(types.ModuleType):
    """The ``time`` module as one module sees it: the same, except that no sleep is longer than ``poll_s``."""

    def __init__(self, poll_s: float) -> None:
        super().__init__("time")
        self.poll_s = poll_s

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.poll_s))


def shorten_polls(module: types.ModuleType, poll_s: float = POLL_S) -> None:
    """Make every ``time.sleep`` in ``module`` at most ``poll_s`` (its other uses of ``time`` are unchanged)."""
    module.time = ShortPolls(poll_s)


class SiteWorkers(types.ModuleType):
    """The ``subprocess`` module as the runner sees it: the same, except that a site's worker is ours, one of
    those started ahead (``start_ahead``) while any is left, else started then."""

    def __init__(self) -> None:
        super().__init__("subprocess")
        self._ahead: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def start_ahead(self, count: int, workspace: str) -> None:
        """Start ``count`` site workers that import what they need, then wait for their arguments."""
        command = [sys.executable, "-m", SITE_WORKER, AHEAD_FLAG, str(workspace)]  # the workspace: for stop
        with self._lock:
            self._ahead += [subprocess.Popen(command, stdin=subprocess.PIPE) for _ in range(count)]

    def Popen(self, args, *rest, **kwargs) -> subprocess.Popen:  # noqa: N802 (subprocess's name)
        args = list(args)
        if args[1:3] != ["-m", NVFLARE_SITE_WORKER]:
            return subprocess.Popen(args, *rest, **kwargs)
        arguments = {"argv": args[3:], "env": kwargs.get("env") or dict(os.environ), "cwd": os.getcwd()}
        while True:
            with self._lock:
                worker = self._ahead.pop(0) if self._ahead else None
            if worker is None:
                args[2] = SITE_WORKER
                return subprocess.Popen(args, *rest, **kwargs)
            if _hand_over(worker, arguments):
                return worker


def _hand_over(worker: subprocess.Popen, arguments: dict) -> bool:
    """Give a worker started ahead its arguments; False if it is no longer there to take them."""
    try:
        worker.stdin.write((json.dumps(arguments) + "\n").encode())
        worker.stdin.close()
        return worker.poll() is None
    except OSError:  # it ended (killed, or its imports failed): the site's worker starts the usual way
        worker.wait()
        return False


def start_sites_ahead(runner_class: type, workers: SiteWorkers, count: int) -> None:
    """Make the runner's process start ``count`` site workers ahead, first thing (the runner forks that process)."""
    run_main = runner_class.simulator_run_main

    def simulator_run_main(runner):
        workers.start_ahead(count, os.path.abspath(runner.workspace))
        return run_main(runner)

    runner_class.simulator_run_main = simulator_run_main


def simulator_command(job_folder: str | Path, workspace: str | Path, sites: list[str]) -> list[str]:
    """The command that runs ``job_folder`` with one process per site, each site at once."""
    return [
        sys.executable, "-m", "resontech_nb.targets.simulator", str(job_folder),
        "-w", str(workspace), "-c", ",".join(sites), "-t", str(len(sites)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import argparse

    from nvflare.fuel.f3.cellnet import connector_manager
    from nvflare.private.fed.app.simulator import simulator, simulator_runner
    from nvflare.private.fed.app.utils import version_check

    version_check()
    shorten_polls(simulator_runner)
    shorten_polls(connector_manager, LISTENER_WAIT_S)
    parser = argparse.ArgumentParser(prog="python -m resontech_nb.targets.simulator")
    simulator.define_simulator_parser(parser)
    args = parser.parse_args(argv)
    workers = SiteWorkers()
    simulator_runner.subprocess = workers
    sites = [name for name in (args.clients or "").split(",") if name]
    if sites:  # each client thread runs one site's worker at a time
        start_sites_ahead(simulator_runner.SimulatorRunner, workers, min(len(sites), args.threads or 1))
    return simulator.run_simulator(args)


if __name__ == "__main__":
    sys.exit(main())
