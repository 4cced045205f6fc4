"""NVFlare's simulator as the local target starts it: the same runner and site workers, their polls made short.

NVFlare 2.9's simulator runner (``simulator_runner.py``) waits in fixed steps while a job starts: it checks
every 1.0 s whether the server app has started, each client thread sleeps 1 s before its first site, and it
retries the connection to each site's new process every 1.0 s. All three are polls of something that is
usually ready in a fraction of that, so a tiny job spent about 2 s of its start-up in them. Here every
sleep in that module is cut to ``POLL_S``: the simulator notices sooner, it does nothing else differently.

Each site runs in a worker process (``simulator_worker.py``) that, when it asks for the next round's task
before the server has made it, sleeps a fixed 0.5 s before asking again: a round then starts up to 0.5 s
late, and once a site falls into that rhythm it tends to stay there. The runner here starts each worker as
``python -m resontech_nb.targets.simulator_site`` instead, NVFlare's worker with its sleeps cut to
``SITE_POLL_S`` (the same as the job's default ``task_request_interval``).

Run as ``python -m resontech_nb.targets.simulator <the arguments of NVFlare's simulator>``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path

POLL_S = 0.05
SITE_POLL_S = 0.1
NVFLARE_SITE_WORKER = "nvflare.private.fed.app.simulator.simulator_worker"
SITE_WORKER = "resontech_nb.targets.simulator_site"


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
    """The ``subprocess`` module as the runner sees it: the same, except that a site's worker starts as ours."""

    def __init__(self) -> None:
        super().__init__("subprocess")

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def Popen(self, args, *rest, **kwargs) -> subprocess.Popen:  # noqa: N802 (subprocess's name)
        args = list(args)
        if args[1:3] == ["-m", NVFLARE_SITE_WORKER]:
            args[2] = SITE_WORKER
        return subprocess.Popen(args, *rest, **kwargs)


def simulator_command(job_folder: str | Path, workspace: str | Path, sites: list[str]) -> list[str]:
    """The command that runs ``job_folder`` with one process per site, each site at once."""
    return [
        sys.executable, "-m", "resontech_nb.targets.simulator", str(job_folder),
        "-w", str(workspace), "-c", ",".join(sites), "-t", str(len(sites)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import argparse

    from nvflare.private.fed.app.simulator import simulator, simulator_runner
    from nvflare.private.fed.app.utils import version_check

    version_check()
    shorten_polls(simulator_runner)
    simulator_runner.subprocess = SiteWorkers()
    parser = argparse.ArgumentParser(prog="python -m resontech_nb.targets.simulator")
    simulator.define_simulator_parser(parser)
    args = parser.parse_args(argv)
    return simulator.run_simulator(args)


if __name__ == "__main__":
    sys.exit(main())
