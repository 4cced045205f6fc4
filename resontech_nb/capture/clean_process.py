"""Run ``fresh_import.py`` on a generated ``model_def.py`` in a clean Python process, fast.

Importing torch takes about two seconds, so a warm server process (``python -I``, torch preloaded, no
notebook folder or PYTHONPATH on its path) forks a fresh child per check; ``warm_up()`` starts it ahead
of time (``%%fl_model`` does so while the cell runs). Where fork is missing, each check starts a cold
process instead. Either way the child sees only a copy of the job's custom/ folder.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import PreflightError

SCRIPT = Path(__file__).with_name("fresh_import.py")
JOBCODE_DIR = Path(__file__).resolve().parents[1] / "jobcode"
TIMEOUT_S = 300.0
_START_TIMEOUT_S = 120.0

_lock = threading.RLock()
_server: subprocess.Popen | None = None


def _can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-I", str(SCRIPT), *args]


def warm_up() -> None:
    """Start the warm server if it is not running (returns at once; the next check waits for it)."""
    global _server
    if not _can_fork():
        return
    with _lock:
        if _server is not None and _server.poll() is None:
            return
        _server = subprocess.Popen(
            _command("--serve"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        _server.ready = False  # type: ignore[attr-defined]


def shutdown() -> None:
    """Stop the warm server (at exit, or after a check that hung)."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None and server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGKILL)  # its own session: the server and a child that hung
        except ProcessLookupError:
            pass
        server.wait(timeout=10)


atexit.register(shutdown)


def _readline(server: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    if not ready:
        return ""
    return server.stdout.readline()


def _via_server(request: dict[str, Any], timeout: float) -> None:
    with _lock:
        warm_up()
        server = _server
        if not server.ready:  # type: ignore[union-attr]
            if _readline(server, _START_TIMEOUT_S).strip() != "ready":
                shutdown()
                raise PreflightError("the clean Python process for preflight did not start: check that torch imports")
            server.ready = True  # type: ignore[union-attr]
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        if not _readline(server, timeout):
            shutdown()
            raise PreflightError(
                f"building the model from model_def.py took over {timeout:.0f} s in a clean process: "
                "make the class's __init__ and forward pass finish quickly on CPU"
            )


def _cold(request: dict[str, Any], folder: Path, timeout: float) -> None:
    request_file = folder / "request.json"
    request_file.write_text(json.dumps(request), encoding="utf-8")
    try:
        subprocess.run(_command(str(request_file)), cwd=folder, timeout=timeout, capture_output=True, check=False)
    except subprocess.TimeoutExpired:
        raise PreflightError(
            f"building the model from model_def.py took over {timeout:.0f} s in a clean process: "
            "make the class's __init__ and forward pass finish quickly on CPU"
        ) from None


def inspect_source(
    source: str,
    class_name: str,
    functions: list[str],
    input_shape: tuple[int, ...] | None,
    timeout: float = TIMEOUT_S,
) -> dict[str, Any]:
    """What a clean process sees when it imports ``source`` as model_def.py and builds ``class_name()``."""
    with tempfile.TemporaryDirectory(prefix="rt_preflight_") as tmp:
        folder = Path(tmp)
        (folder / "model_def.py").write_text(source, encoding="utf-8")
        for path in JOBCODE_DIR.glob("rt_*.py"):  # what a job's custom/ holds next to model_def.py
            shutil.copyfile(path, folder / path.name)
        result_file = folder / "result.json"
        request = {
            "custom_dir": str(folder),
            "class_name": class_name,
            "functions": functions,
            "input_shape": list(input_shape) if input_shape else None,
            "result": str(result_file),
        }
        if _can_fork():
            _via_server(request, timeout)
        else:
            _cold(request, folder, timeout)
        if not result_file.is_file():
            log = folder / "preflight.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            raise PreflightError(
                f"the clean process building {class_name} from model_def.py died"
                + (f" ({tail[0]})" if tail else "")
                + ": check the class's __init__ and forward pass"
            )
        return json.loads(result_file.read_text(encoding="utf-8"))
