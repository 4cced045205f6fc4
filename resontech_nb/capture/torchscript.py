"""TorchScript functions from the notebook: the Python function a ``ScriptFunction`` was compiled from.

``@torch.jit.script`` turns a def into a ``torch.jit.ScriptFunction`` that has no source of its own;
torch keeps the original function as ``_torchdynamo_inline``. Capture writes that function's def (its
``@torch.jit.script`` line included); a function scripted by a call (``f = torch.jit.script(g)``) gets
that call written after the def. Reads only ``sys.modules``: torch is loaded when such a value exists.
"""

from __future__ import annotations

import ast
import sys
import types
from typing import Any


def is_script_function(value: Any) -> bool:
    jit = sys.modules.get("torch.jit")
    kind = getattr(jit, "ScriptFunction", None)
    return isinstance(kind, type) and isinstance(value, kind)


def script_original(value: Any) -> types.FunctionType | None:
    """The Python function ``value`` (a ScriptFunction) was compiled from, if torch kept it."""
    if not is_script_function(value):
        return None
    original = getattr(value, "_torchdynamo_inline", None)
    return original if isinstance(original, types.FunctionType) else None


def scripted_by_call(def_source: str) -> bool:
    """The def in ``def_source`` carries no decorator, so its ScriptFunction came from ``torch.jit.script(fn)``."""
    try:
        tree = ast.parse(def_source)
    except SyntaxError:
        return False
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return bool(defs) and not defs[0].decorator_list


def script_call(name: str, function_name: str) -> str:
    """The line that binds ``name`` to the scripted ``function_name`` (``torch`` must be imported)."""
    return f"{name} = torch.jit.script({function_name})\n"
