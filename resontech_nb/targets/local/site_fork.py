"""A site's simulator worker forked ahead of time from the runner's process, waiting for its arguments.

The runner's process has torch and NVFlare's client imported already (``simulator.main`` imports them
before NVFlare forks that process), so a worker forked from it needs no second of imports of its own, and
costs no CPU for them: a tiny two-site job took 6.7 CPU-seconds, 2 of them each site's imports.

``ForkedSite`` is what NVFlare's runner uses of the ``subprocess.Popen`` it would have made (``pid``,
``returncode``, ``poll``, ``wait``, ``terminate``, ``kill``); the worker is a child of the runner's process
as a ``Popen``'s would be. It reads one line from a pipe: the arguments, environment and working folder the
runner gave its worker (``hand_over``), then runs as that worker (``simulator_site``) and exits with its
exit code without running anything the runner's process would run at its exit. A worker the runner
never needs ends when the pipe closes, which it does when the runner's process ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time


class ForkedSite:
    """A site's worker, forked now, waiting for ``hand_over``; ``others`` are earlier ones (their pipes closed here)."""

    def __init__(self, others: list[ForkedSite] = ()) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write)
            for other in others:  # their pipes must close when the runner's process ends, not when this one does
                other._close_pipe()
            _run_when_handed_over(read)  # does not return
        os.close(read)
        self.pid = pid
        self.args = ["<site worker forked from the simulator>"]
        self.returncode: int | None = None
        self._pipe: int | None = write

    def hand_over(self, arguments: dict) -> bool:
        """Give the worker its arguments; False if it is no longer there to take them."""
        data = (json.dumps(arguments) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._pipe, data) :]
        except OSError:  # it ended (killed): the site's worker starts the usual way
            self.wait()
            return False
        finally:
            self._close_pipe()
        return self.poll() is None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None


def _run_when_handed_over(pipe: int) -> None:
    import sys

    code = 1
    try:
        with os.fdopen(pipe, "rb") as reader:
            line = reader.readline()
        if not line:  # the runner ended without needing this worker
            code = 0
        else:
            from . import site_worker as simulator_site

            simulator_site.become(json.loads(line))
            code = simulator_site.run_worker()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported here: nothing of the parent's may run in this process
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing to keep
                pass
        os._exit(code if isinstance(code, int) else 1)
