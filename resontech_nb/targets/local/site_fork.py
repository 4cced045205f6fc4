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

When the sites take turns on a pool of fewer workers than sites (NVFlare's ``-t``), the runner starts a new
worker for every task of every site: 64 sites meant 64 worker starts a round, each a new interpreter importing
torch and NVFlare. ``SiteZygote`` is forked ahead like the workers; it stays single-threaded, and forks a
worker whenever the runner asks (``fork``), as fast as the ones forked ahead. Its workers are its children, so
each one's exit code comes back to the runner through a pipe (``ZygoteSite``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
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
    with os.fdopen(pipe, "rb") as reader:
        line = reader.readline()
    _run_as_worker(json.loads(line) if line else None)  # no line: the runner ended without needing this worker


def _run_as_worker(arguments: dict | None, status: int | None = None) -> None:
    """Run as the site worker the runner asked for; exit with its code (also written to ``status``)."""
    import sys

    code = 1
    try:
        if arguments is None:
            code = 0
        else:
            from . import site_worker as simulator_site

            simulator_site.become(arguments)
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
        code = code if isinstance(code, int) else 1
        if status is not None:
            with contextlib.suppress(OSError):
                os.write(status, str(code).encode())
        os._exit(code)


class SiteZygote:
    """A process forked now that forks a site worker whenever ``fork`` asks; ``others``' pipes are closed in it."""

    def __init__(self, others: list[ForkedSite] = ()) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for other in others:
                other._close_pipe()
            _serve_forks(theirs)  # does not return
        theirs.close()
        self.pid = pid
        self._socket = ours
        self._lock = threading.Lock()

    def fork(self, arguments: dict) -> ZygoteSite | None:
        """A new worker with the runner's ``arguments``; None if the zygote is gone."""
        data = json.dumps(arguments).encode()
        read, write = os.pipe()  # the worker writes its exit code here
        try:
            with self._lock:
                socket.send_fds(self._socket, [struct.pack("!I", len(data))], [write])
                self._socket.sendall(data)
                reply = _receive(self._socket, 8)
        except OSError:
            reply = b""
        finally:
            os.close(write)
        if len(reply) != 8:
            os.close(read)
            return None
        return ZygoteSite(struct.unpack("!q", reply)[0], read)


class ZygoteSite(ForkedSite):
    """A worker the zygote forked: ``Popen``'s part as for ``ForkedSite``, its exit code from its status pipe."""

    def __init__(self, pid: int, status: int) -> None:  # noqa: D107 - no fork here: the zygote made it
        self.pid = pid
        self.args = ["<site worker forked from the simulator's zygote>"]
        self.returncode = None
        self._pipe = None
        self._status = status
        os.set_blocking(status, False)

    def poll(self) -> int | None:
        if self.returncode is None and self._status is not None:
            try:
                data = os.read(self._status, 32)
            except BlockingIOError:  # still running
                return None
            self.returncode = int(data) if data.strip().lstrip(b"-").isdigit() else -signal.SIGKILL  # no code: killed
            os.close(self._status)
            self._status = None
        return self.returncode


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _serve_forks(sock: socket.socket) -> None:
    """The zygote: for each request, fork a worker with its arguments; end when the runner's side closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the system reaps the workers; their codes go through pipes
    try:
        while True:
            header, fds, _flags, _addr = socket.recv_fds(sock, 4, 1)
            if len(header) < 4 or not fds:
                break
            data = _receive(sock, struct.unpack("!I", header)[0])
            pid = os.fork()
            if pid == 0:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _run_as_worker(json.loads(data), fds[0])  # does not return
            os.close(fds[0])
            sock.sendall(struct.pack("!q", pid))
    except BaseException:  # noqa: BLE001 - nothing of the runner's may run in this process
        pass
    finally:
        os._exit(0)
