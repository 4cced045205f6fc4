"""Build a captured model from its ``model_def.py`` alone, in a Python process that has only a job's custom/.

Run by ``clean_process`` with ``python -I`` (no user site, no PYTHONPATH, no notebook folder on the path),
so a name that only the notebook's kernel can import fails here as it would on an FL site. Plain Python:
it imports nothing from resontech_nb.

    python -I fresh_import.py REQUEST.json     one model, then exit
    python -I fresh_import.py --serve          torch preloaded; one JSON request a line on stdin, each
                                               handled in a forked child (a fresh process image per model)

A request: ``{"custom_dir", "class_name", "functions": [...], "input_shape": [..] | null, "result": path}``.
The result file gets ``{"ok": true, "param_count", "size_bytes", "state": [[key, shape], ...],
"output_shape"}`` or ``{"ok": false, "stage": "import" | "define" | "init" | "module" | "forward", "error"}``
(plus ``"file"`` when the error is a file that could not be opened).
"""

from __future__ import annotations

import importlib
import json
import os
import sys


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _failure(stage: str, exc: BaseException) -> dict:
    """A failed stage; ``file`` is the file it could not open (one next to the notebook, often)."""
    result = {"ok": False, "stage": stage, "error": _one_line(exc)}
    if isinstance(exc, OSError) and isinstance(exc.filename, str):
        result["file"] = exc.filename
    return result


def inspect_model(request: dict) -> dict:
    custom_dir = request["custom_dir"]
    os.chdir(custom_dir)
    sys.path.insert(0, custom_dir)
    try:
        module = importlib.import_module("model_def")
    except BaseException as exc:  # noqa: BLE001 - anything the user's module raises
        return _failure("import", exc)
    name = request["class_name"]
    model_cls = getattr(module, name, None)
    if not isinstance(model_cls, type):
        return {"ok": False, "stage": "define", "error": f"model_def.py does not define class {name}"}
    for function in request.get("functions", []):
        if not callable(getattr(module, function, None)):
            return {"ok": False, "stage": "define", "error": f"model_def.py defines no callable {function}"}
    import torch

    try:
        model = model_cls()
    except BaseException as exc:  # noqa: BLE001
        return _failure("init", exc)
    if not isinstance(model, torch.nn.Module):
        return {"ok": False, "stage": "module", "error": f"{name}() is not a torch.nn.Module"}
    tensors = list(model.parameters()) + list(model.buffers())
    result = {
        "ok": True,
        "param_count": sum(p.numel() for p in model.parameters()),
        "size_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "state": [[key, list(value.shape)] for key, value in model.state_dict().items()],
        "output_shape": None,
    }
    shape = request.get("input_shape")
    if shape:
        try:
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
            model.eval()
            with torch.no_grad():
                out = model(x)
        except BaseException as exc:  # noqa: BLE001 - the user's forward
            return _failure("forward", exc)
        result["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else None
    return result


def _handle(request: dict) -> None:
    """Run one request with the user's prints sent to a log file, then write the result file."""
    log = os.open(os.path.join(request["custom_dir"], "preflight.log"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = inspect_model(request)
    except BaseException as exc:  # noqa: BLE001
        result = {"ok": False, "stage": "import", "error": _one_line(exc)}
    with open(request["result"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


def serve() -> None:
    import torch  # noqa: F401 - preloaded once; every forked child starts with it

    for module in ("numpy", "PIL.Image"):  # what the shipped default training loop imports
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    protocol = sys.stdout
    protocol.write("ready\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _handle(request)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        protocol.write(json.dumps({"status": status}) + "\n")
        protocol.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        with open(sys.argv[1], encoding="utf-8") as fh:
            _handle(json.load(fh))
