"""One site of NVFlare's simulator as the local target starts it: NVFlare's site worker, its sleeps made short.

The worker's fixed 0.5 s wait before it asks again for a task that was not there yet, its wait between
tasks, and its client runner's 0.5 s wait before it first syncs with the server are cut to
``SITE_POLL_S``; it does nothing else differently.

Usually a worker is forked ahead from the runner's process (``site_fork``) and takes its arguments,
environment and working folder from the runner when it would have been started (``become``); otherwise
the runner starts ``python -m resontech_nb.targets.local.site_worker`` with the arguments of NVFlare's
``simulator_worker``.
"""

from __future__ import annotations

import os
import sys

from . import handover
from .polls import SITE_POLL_S, shorten_polls


def run_worker() -> int:
    """Run NVFlare's site worker on ``sys.argv``, its polls shortened; its exit code."""
    from nvflare.fuel.f3.mpm import MainProcessMonitor
    from nvflare.private.fed.app.simulator import simulator_worker
    from nvflare.private.fed.client import client_runner

    shorten_polls(simulator_worker, SITE_POLL_S)
    shorten_polls(client_runner, SITE_POLL_S)
    if handover.enabled():  # the server holds the next request until there is a task
        handover.install_site()
    args = simulator_worker.parse_arguments()
    return MainProcessMonitor.run(main_func=simulator_worker.main, run_dir=args.workspace, args=args) or 0


def become(arguments: dict) -> None:
    """Take on the arguments, environment and working folder the runner gave this site's worker."""
    os.setsid()  # as the runner starts each worker: a session of its own
    old_path = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    os.environ.clear()
    os.environ.update(arguments["env"])
    new_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    kept = [p for p in sys.path[1:] if p not in old_path or p in new_path]
    os.chdir(arguments["cwd"])
    # as Python would have set it up at start: the working folder, then PYTHONPATH (the job's custom/ folder)
    sys.path[:] = [os.getcwd(), *new_path, *[p for p in kept if p not in new_path]]
    sys.argv[1:] = arguments["argv"]


if __name__ == "__main__":
    sys.exit(run_worker())
