"""A simulator process started ahead: torch and NVFlare imported before the user submits, then one job.

A job's simulator spends most of its start-up importing torch and NVFlare (about 1.8 s of the 2.35 s from
``submit`` to the first round on a quiet machine). So the local target keeps one process per notebook process
that has done those imports already (``simulator.import_ahead``, and ``torch._dynamo``, which the default loop's
optimizer imports) and then blocks on a pipe, using no CPU, until it is handed a job (``take``): the simulator's
arguments, the job's working folder, log file and environment, those of submit time. It then becomes what
``simulator_command`` would have started, the environment replaced, the working folder, ``sys.path[0]`` and
``sys.argv`` set as Python would have set them, stdin, stdout and stderr the ones a cold start gets, its
command line rewritten to the cold start's own (what ``ps`` and ``processes_using`` see), and from there runs
the same code (``simulator.main``): same runner, site forks, shared-memory folder, polls and hand-over. It
serves that one job and exits. It is a session of its own from the start, as a cold start is, so the pid the
target records is the job's, and stopping its process group stops the job.

What takes effect only when a process starts cannot be changed afterwards: the Python executable, and the
variables read at start-up (``PYTHON*``: the path, hash seed, ...; glibc's ``MALLOC_*``; the thread libraries'
``OMP_*``/``KMP_*``/``MKL_*``/``OPENBLAS_*``; ``TORCH_*``, ``CUDA_*``, ``LD_*``). When any of them differs
between the warm process and the job, the job starts cold. The exception is ``OMP_NUM_THREADS``, the sites'
share of the cores (it depends on the number of sites): torch reads it for its thread count, which
``torch.set_num_threads`` sets to the same number.

The target starts the next warm process as it hands one a job, so a second submit is warm too; that one waits
with its imports (seconds of CPU) until the job it follows has ended, or ``AFTER_MAX_S`` at most, so as not to
take cores from that job's start-up and first rounds.
A warm process ends by itself when the process that started it ends (the pipe closes; it also looks at its
parent every ``LOOK_S``) and is stopped at that process's exit. Never with a launcher (the platform's sandbox
keeps its cold start); ``RESONTECH_WARM=0`` turns it off.

Run as ``python -m resontech_nb.targets.local.warm [--after WORKSPACE]``, by ``warm_up`` only.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .simulator import simulator_env

log = logging.getLogger(__name__)

ENV = "RESONTECH_WARM"
ROOM = 4096  # bytes of command line kept for the job's own command, rewritten in place when it is handed over
AFTER_MAX_S = 30.0  # longest a new warm process waits for the job before it to end
AFTER_LOOK_S = 0.25
LOOK_S = 2.0  # idle: how often it checks that its parent is still there (besides the pipe closing)
SET_AT_START = ("PYTHON", "MALLOC_", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "TORCH_", "CUDA_", "LD_")
THREADS = "OMP_NUM_THREADS"  # applied to a warm process with torch.set_num_threads
MODULE = "resontech_nb.targets.local.warm"


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the local target starts jobs in a warm process (on Linux unless ``RESONTECH_WARM=0``)."""
    value = (environ if environ is not None else os.environ).get(ENV, "1").strip().lower()
    return sys.platform.startswith("linux") and value not in ("0", "false", "no", "off")


def set_at_start(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that take effect when a process starts (and cannot be changed after)."""
    return {key: value for key, value in env.items() if key.startswith(SET_AT_START) and key != THREADS}


class WarmProcess:
    """A warm process this process started, idle until ``hand_over``."""

    def __init__(self, after: Path | None = None) -> None:
        self.env = simulator_env(2)
        self.executable = sys.executable
        self.folder = tempfile.mkdtemp(prefix="rt_warm_")  # its start folder: sys.path[0] until it has a job
        command = [self.executable, "-m", MODULE, "--room", "." * ROOM]
        if after is not None:
            command += ["--after", str(after)]
        self.proc = subprocess.Popen(
            command,
            cwd=self.folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # as a cold start: the job's pid leads its own process group
        )

    def unfit(self, command: list[str], env: dict[str, str]) -> str | None:
        """Why this process cannot run ``command`` in ``env`` as a cold start would; None if it can."""
        if self.proc.poll() is not None:
            return "the warm process has ended"
        if command[0] != self.executable or command[1:3] != ["-m", "resontech_nb.targets.local.simulator"]:
            return "another Python or command"
        if len(_command_line(command)) > ROOM:
            return "the command is too long for the warm process's command line"
        ours, theirs = set_at_start(self.env), set_at_start(env)
        changed = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
        if changed:
            return f"{', '.join(changed)} changed since the warm-up (they take effect at start)"
        if not env.get(THREADS, "1").strip().isdigit() or int(env.get(THREADS, "1")) < 1:
            return f"{THREADS}={env.get(THREADS)!r} is not a thread count"
        return None

    def hand_over(self, command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> bool:
        """Give it the job; False if it is no longer there to take it."""
        request = {"command": command, "env": env, "cwd": str(cwd), "log": str(log_path)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.close()
        except OSError:
            self.stop()
            return False
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop it while it is idle (its own session: nothing else of it is left)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_lock = threading.Lock()
_idle: WarmProcess | None = None


def warm_up(after: Path | None = None) -> bool:
    """Start a warm process unless one is idle already (returns at once); whether one is there now.

    ``after``: the workspace of a job just started; the new process imports once that job has ended.
    """
    global _idle
    if not enabled():
        return False
    with _lock:
        if _idle is not None and _idle.proc.poll() is None:
            return True
        if _idle is not None:
            _idle.stop()
        try:
            _idle = WarmProcess(after)
        except OSError as exc:
            log.info("no warm simulator process (%s): jobs start cold", exc)
            _idle = None
            return False
        log.debug("warm simulator process %s started", _idle.proc.pid)
        return True


def take(command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen | None:
    """The idle warm process, handed the job (its ``Popen``); None if there is none or it cannot run it."""
    global _idle
    with _lock:
        warm, _idle = _idle, None
    if warm is None or not enabled(env):
        if warm is not None:
            warm.stop()
        return None
    why = warm.unfit(command, env)
    if why is not None:
        log.info("the job starts cold: %s", why)
        warm.stop()
        return None
    if not warm.hand_over(command, env, cwd, log_path):
        log.info("the job starts cold: the warm process ended")
        return None
    return warm.proc


def shutdown() -> None:
    """Stop the idle warm process (at exit)."""
    global _idle
    with _lock:
        warm, _idle = _idle, None
    if warm is not None:
        warm.stop()


def _forget() -> None:  # in a child forked from this process: the warm process is not its own
    global _idle, _lock
    _idle, _lock = None, threading.Lock()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


# -- the warm process ------------------------------------------------------------------


def _command_line(command: list[str]) -> bytes:
    return b"\0".join(os.fsencode(part) for part in command) + b"\0"


def set_command_line(command: list[str]) -> bool:
    """Rewrite this process's command line in place (what ``/proc/<pid>/cmdline``, ``ps`` and psutil show, also
    for the processes forked from it), within the room its original one had."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49
        line = _command_line(command)
        if len(line) > end - start:
            return False
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            memory.write(line.ljust(end - start, b"\0"))
        with open("/proc/self/cmdline", "rb") as shown:
            return shown.read().startswith(line)
    except (OSError, ValueError, IndexError):
        return False


def _next_request(parent: int, timeout: float) -> dict[str, Any] | None | bool:
    """The job handed over (a dict), False when the parent is gone, None after ``timeout`` with neither."""
    ready, _, _ = select.select([sys.stdin.buffer], [], [], timeout)
    if ready:
        line = sys.stdin.buffer.readline()
        return json.loads(line) if line.strip() else False  # an empty read: the pipe closed
    return None if os.getppid() == parent else False


def _ended(workspace: Path) -> bool:
    """Whether the job in ``workspace`` has ended (its server writes ``rt_status.json`` at the end or on failure)."""
    return any((workspace / "server").glob("*/rt_status.json"))


def _wait_for_job(parent: int, after: Path | None) -> dict[str, Any] | None:
    """Wait (no CPU but a look now and then) for the job; None when the parent is gone."""
    if after is not None:  # the job before this one is running: it gets the cores first
        deadline = time.monotonic() + AFTER_MAX_S
        while time.monotonic() < deadline and not _ended(after):
            request = _next_request(parent, AFTER_LOOK_S)
            if request is not None:
                return request or None
    from . import simulator

    simulator.import_ahead()
    import torch._dynamo  # noqa: F401 - the default loop's optimizer imports it (``simulator.training_imports``)

    # ``simulator.main`` collects and freezes what is alive before it forks the runner: a full collection of this
    # heap takes 0.16 s. Done here while idle, the one at submit only looks at what came after (the same objects
    # end up frozen either way).
    gc.collect()
    gc.freeze()

    while True:
        request = _next_request(parent, LOOK_S)
        if request is not None:
            return request or None


def _become(request: dict[str, Any], start_folder: str) -> list[str]:
    """Take on the job's streams, environment, folder, path and command line; the simulator's arguments."""
    import importlib

    import torch

    command = request["command"]
    with contextlib.suppress(OSError):
        os.rmdir(start_folder)
    output = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.close(nothing)
    threads = request["env"].get(THREADS)
    if threads and threads != os.environ.get(THREADS):
        torch.set_num_threads(int(threads))  # what torch would have taken from the variable at start
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as ``python -m`` sets it up: the working folder first
    importlib.invalidate_caches()
    from . import simulator

    sys.argv[:] = [simulator.__file__, *command[3:]]
    if not set_command_line(command):
        print(f"{MODULE}: could not show the job's command line", file=sys.stderr, flush=True)
    return command[3:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--room", default="", help="room for the job's command line (dots)")
    parser.add_argument("--after", type=Path, default=None, help="the workspace of the job started before this")
    args = parser.parse_args(argv)
    start_folder = os.getcwd()
    parent = os.getppid()
    if not set_command_line([sys.executable, "-m", MODULE]):
        return 1  # no way to show the job's command line: the target then starts the job cold
    request = _wait_for_job(parent, args.after)
    if request is None:
        with contextlib.suppress(OSError):
            os.rmdir(start_folder)
        return 0
    from . import simulator

    return simulator.main(_become(request, start_folder))


if __name__ == "__main__":
    sys.exit(main())
