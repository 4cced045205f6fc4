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
started, which it has. The runner here starts each worker as ``python -m resontech_nb.targets.local.site_worker``
instead, NVFlare's worker with the sleeps of both modules cut to ``SITE_POLL_S`` (the same as the job's
default ``task_request_interval``).
On top of that, the server holds a site's request for a task until there is one, and its loops wake when an
answer arrives (``handover``): a round waits for no poll at all.

All of a job's processes share this machine, so the weights go between them through shared memory
(``jobcode/rt_shm``): this process makes the job's folder under ``/dev/shm``, names it in the environment that
the server and the sites inherit, and removes it when it ends (the local target removes it as well when the
job ends, is aborted or this process died). ``RESONTECH_SHM_WEIGHTS=0`` keeps NVFlare's transport.

The runner starts a site's worker only once its server app is up, and each worker then spends more than a
second importing torch and NVFlare before it can connect, as the runner's process did before it. So this
process imports them once, before NVFlare forks the runner's process from it, and the runner's process
forks each site's worker first thing (``site_fork``): the worker waits for the arguments, environment and
working folder the runner gives it when it would have started it (``SiteWorkers.Popen``), and runs from
there as that worker. Neither the server nor a site imports torch again: a tiny two-site job used 6.7
CPU-seconds, 4 of them three imports of torch and NVFlare. Likewise ``torch._dynamo``, which a torch optimizer
imports when the first one is made (1.5 CPU-seconds in every site's first round), when the job's training makes
one (``training_imports``).

NVFlare's runner starts each site from a thread of its own, and every thread writes its site's name into one
dictionary the runner shares between them (``build_ctx["client_name"]``) and then sends that dictionary to its
site's worker. When another thread writes its name in between (64 sites on two cores loaded by other work), a
worker starts under another site's name: two workers then claim that site and one site never answers, so round 0
waits forever. Here each thread sees its own ``client_name`` in that dictionary (``ThreadClientContext``).

Run as ``python -m resontech_nb.targets.local.simulator <the arguments of NVFlare's simulator>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types
from pathlib import Path

from ...jobcode import rt_shm
from . import handover
from .polls import shorten_polls
from .site_fork import ForkedSite, SiteZygote

LISTENER_WAIT_S = 0.1
# Sites running at once; with more they take turns (NVFlare's -t), each turn a worker forked anew by the zygote:
# 64 sites 16 at a time took 41 s a round against 3.2 s all at once (1 GB against 5.2 GB), so turns are for memory.
POOL_SITES = 64  # 64 sites at once (4-parameter model): 5.2 GB PSS in all, 3.2 s a round on 2 busy cores
SITES_AT_ONCE_ENV = "RESONTECH_SITES_AT_ONCE"
NVFLARE_SITE_WORKER = "nvflare.private.fed.app.simulator.simulator_worker"
SITE_WORKER = "resontech_nb.targets.local.site_worker"
SHM_ENV = "RESONTECH_SHM_WEIGHTS"


class ThreadClientContext(dict):
    """NVFlare's build context with ``client_name`` kept per thread: what a thread set is what it reads and what
    goes to its site's worker (pickled as a plain ``dict``)."""

    NAME = "client_name"

    def __init__(self, base: dict | None = None) -> None:
        super().__init__(base or {})
        self._local = threading.local()

    def _own(self) -> dict:
        found = dict(self)
        if hasattr(self._local, "name"):
            found[self.NAME] = self._local.name
        return found

    def __setitem__(self, key, value) -> None:
        if key == self.NAME:
            self._local.name = value
        else:
            super().__setitem__(key, value)

    def __getitem__(self, key):
        if key == self.NAME and hasattr(self._local, "name"):
            return self._local.name
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self._own() else default

    def __contains__(self, key) -> bool:
        return key in self._own()

    def items(self):
        return self._own().items()

    def copy(self) -> dict:
        return self._own()

    def __reduce__(self):
        return (dict, (self._own(),))

    def __deepcopy__(self, memo) -> dict:
        import copy

        return copy.deepcopy(self._own(), memo)


def own_client_names(simulator_runner: types.ModuleType) -> None:
    """Give each of the runner's site threads its own ``build_ctx["client_name"]`` (``ThreadClientContext``)."""
    runner_class = simulator_runner.SimulatorClientRunner
    if getattr(runner_class, "_rt_own_client_names", False):
        return
    init = runner_class.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.build_ctx = ThreadClientContext(self.build_ctx)

    runner_class.__init__ = __init__
    runner_class._rt_own_client_names = True


def shared_weights(environ: dict[str, str] | None = None) -> bool:
    """Whether weights go through shared memory (on unless ``RESONTECH_SHM_WEIGHTS=0``)."""
    return (environ if environ is not None else os.environ).get(SHM_ENV, "1").strip() not in ("0", "false", "no", "off")


class SiteWorkers(types.ModuleType):
    """The ``subprocess`` module as the runner sees it: the same, except that a site's worker is ours, one of
    those forked ahead (``fork_ahead``) while any is left, else started then."""

    def __init__(self) -> None:
        super().__init__("subprocess")
        self._ahead: list[ForkedSite] = []
        self._zygote: SiteZygote | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def fork_ahead(self, count: int, zygote: bool = False) -> None:
        """Fork ``count`` site workers from this process; each waits for its arguments. With ``zygote``, also a
        process that forks one whenever asked, for when those are used up (sites taking turns on a pool)."""
        with self._lock:
            for _ in range(count):
                self._ahead.append(ForkedSite(others=self._ahead))
            if zygote:
                self._zygote = SiteZygote(others=self._ahead)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 (subprocess's name)
        args = list(args)
        if args[1:3] != ["-m", NVFLARE_SITE_WORKER]:
            return subprocess.Popen(args, *rest, **kwargs)
        arguments = {"argv": args[3:], "env": kwargs.get("env") or dict(os.environ), "cwd": os.getcwd()}
        while True:
            with self._lock:
                worker = self._ahead.pop(0) if self._ahead else None
            if worker is None:
                forked = self._zygote.fork(arguments) if self._zygote is not None else None
                if forked is not None:
                    return forked
                args[2] = SITE_WORKER
                return subprocess.Popen(args, *rest, **kwargs)
            if worker.hand_over(arguments):
                return worker


def fork_sites_ahead(runner_class: type, workers: SiteWorkers, count: int, zygote: bool = False) -> None:
    """Make the runner's process fork ``count`` site workers first thing (NVFlare forks that process from this),
    and with ``zygote`` the process that forks more of them later."""
    run_main = runner_class.simulator_run_main

    def simulator_run_main(runner):
        workers.fork_ahead(count, zygote)  # before the runner starts any thread
        return run_main(runner)

    runner_class.simulator_run_main = simulator_run_main


def training_imports(job_folder: str | Path) -> tuple[str, ...]:
    """What every site's training will import, so that it is imported once, before the sites are forked.

    A torch optimizer imports ``torch._dynamo`` when the first one is made: 1.5 CPU-seconds here, in every site's
    first round. The job's ``model_def.py`` says whether its training makes one (the default loop does).
    """
    for model_def in Path(job_folder).glob("*/custom/model_def.py"):
        try:
            source = model_def.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "optim" in source or "rt_default_train" in source:
            return ("torch._dynamo",)
    return ()


def sites_at_once(sites: int, environ: dict[str, str] | None = None) -> int:
    """How many sites run at once: all up to ``POOL_SITES`` (or ``RESONTECH_SITES_AT_ONCE``), the others taking
    turns."""
    value = (os.environ if environ is None else environ).get(SITES_AT_ONCE_ENV, "").strip()
    pool = int(value) if value.isdigit() and int(value) > 0 else POOL_SITES
    return max(1, min(sites, pool))


def simulator_env(sites: int) -> dict[str, str]:
    """The simulator's environment: ours without the password, each site's torch limited to its share of the
    cores (all sites train on this machine at once; torch's default of every core per site makes them
    contend), and glibc's malloc held to 2 arenas (NVFlare's many threads each get an arena otherwise, and
    each keeps the memory freed in it: a 45 M-parameter job's server peaked at 2.4 GB instead of 1.8 GB, its
    sites at 1.3 GB instead of 1.1 GB, at the same speed). Values the user set are kept."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RESONTECH_PASSWORD", None)  # the job never needs it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // max(1, sites))))
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def simulator_command(
    job_folder: str | Path, workspace: str | Path, sites: list[str], threads: int | None = None
) -> list[str]:
    """The command that runs ``job_folder``: ``threads`` sites at once (default ``sites_at_once``), a process each."""
    threads = sites_at_once(len(sites)) if threads is None else max(1, min(threads, len(sites)))
    return [
        sys.executable, "-m", "resontech_nb.targets.local.simulator", str(job_folder),
        "-w", str(workspace), "-c", ",".join(sites), "-t", str(threads),
    ]  # fmt: skip


def import_ahead() -> None:
    """Import what every job's simulator imports before it runs: torch, NVFlare's simulator, server and site, and
    what the default training loop imports (``training_imports``). A warm process (``warm``) does it before the
    job exists."""
    import torch  # noqa: F401 - once, for the server and every site's worker: NVFlare and we fork them from here
    from nvflare.fuel.f3.cellnet import connector_manager  # noqa: F401
    from nvflare.private.fed.app.simulator import simulator, simulator_runner, simulator_worker  # noqa: F401
    from nvflare.private.fed.app.utils import version_check  # noqa: F401
    from nvflare.private.fed.client import client_runner  # noqa: F401 - a site's, likewise


def main(argv: list[str] | None = None) -> int:
    import argparse
    import gc
    import importlib

    import_ahead()
    from nvflare.fuel.f3.cellnet import connector_manager
    from nvflare.private.fed.app.simulator import simulator, simulator_runner
    from nvflare.private.fed.app.utils import version_check

    version_check()
    shorten_polls(simulator_runner)
    shorten_polls(connector_manager, LISTENER_WAIT_S)
    own_client_names(simulator_runner)
    if handover.enabled():  # the server (this process's fork) hands tasks to waiting sites at once
        handover.install_server()
    parser = argparse.ArgumentParser(prog="python -m resontech_nb.targets.local.simulator")
    simulator.define_simulator_parser(parser)
    args = parser.parse_args(argv)
    for name in training_imports(args.job_folder):
        importlib.import_module(name)
    # What is alive now (torch, NVFlare, their modules) is exempt from the collector in every process forked from
    # here: a site's collections no longer write to those pages, so they stay shared (64 sites of a 1 M model:
    # 4.5 GB PSS in all instead of 6.7 GB, at the same speed).
    gc.collect()
    gc.freeze()
    owner = os.getpid()
    shared = rt_shm.make_dir(owner) if shared_weights() else None
    if shared:
        os.environ[rt_shm.SHM_DIR_ENV] = shared  # read by rt_arrays in the server and the sites, forked from here
    else:
        os.environ.pop(rt_shm.SHM_DIR_ENV, None)
    try:
        workers = SiteWorkers()
        simulator_runner.subprocess = workers
        sites = [name for name in (args.clients or "").split(",") if name]
        if sites:  # each client thread runs one site's worker at a time; fewer threads: sites take turns
            threads = min(len(sites), args.threads or 1)
            fork_sites_ahead(simulator_runner.SimulatorRunner, workers, threads, zygote=threads < len(sites))
        return simulator.run_simulator(args)
    finally:
        if os.getpid() == owner:  # not in a forked child that came back this way
            rt_shm.remove_dir(shared)


if __name__ == "__main__":
    sys.exit(main())
