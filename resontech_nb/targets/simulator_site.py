"""One site of NVFlare's simulator as the local target starts it: NVFlare's site worker, its sleeps made short.

The runner (``simulator.py``) starts this in place of ``nvflare.private.fed.app.simulator.simulator_worker``,
with the same arguments. The worker's fixed 0.5 s wait before it asks again for a task that was not there
yet, and its wait between tasks, are cut to ``SITE_POLL_S``; it does nothing else differently.
"""

from __future__ import annotations

from .simulator import SITE_POLL_S, shorten_polls


def main() -> None:
    from nvflare.fuel.f3.mpm import MainProcessMonitor
    from nvflare.private.fed.app.simulator import simulator_worker

    shorten_polls(simulator_worker, SITE_POLL_S)
    args = simulator_worker.parse_arguments()
    MainProcessMonitor.run(main_func=simulator_worker.main, run_dir=args.workspace, args=args)


if __name__ == "__main__":
    main()
