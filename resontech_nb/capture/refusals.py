"""Why a name cannot be written into ``model_def.py``, in one line: the user's own name, what it is, one fix.

A refusal names what the user has to change (the global, and where inside it the offending part sits:
``ACTIVATIONS['gelu']``, ``args.device``), says what that is with its type printed once
(``torch.jit.ScriptFunction``), and gives the one fix that fits the code that uses it (``Net.__init__``
for a class, the function itself for ``fl_train_model`` or a helper).
"""

from __future__ import annotations

import io
import sys
import types
from typing import Any

from .torchscript import is_script_function


def unwritable_message(name: str, value: Any, user: str, where: str, part: Any = None, path: str = "") -> str:
    """``name`` (read by ``user``, whose code lives in ``where``) holds ``part`` at ``path``, which has no source."""
    if part is None or part is value:
        what, offending = f"is {describe(value)} ({type_name(value)}) and cannot", value
    else:
        at = f" at {name}{path}" if path else ""
        what, offending = f"holds {describe(part)} ({type_name(part)}){at}, which cannot", part
    return f"`{name}` used by {user} {what} be written into model_def.py: {_fix(offending, name, where)}"


def not_rebuilt_message(name: str, value: Any, user: str, where: str, difference: str) -> str:
    """``name``'s written form does not give back the live value (``difference`` says where they part)."""
    return (
        f"`{name}` used by {user} is {article(type_name(value))} that model_def.py would not rebuild as the "
        f"notebook has it ({difference}): create it inside {where}"
    )


def type_name(value: Any) -> str:
    """``module.Qualname`` of ``value``'s type, the module printed once (``torch.jit.ScriptFunction``)."""
    kind = type(value)
    module, qualname = kind.__module__, kind.__qualname__
    if module == "builtins" or qualname.startswith(f"{module}."):
        return qualname
    return f"{module}.{qualname}"


def describe(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "an open file"
    if is_script_function(value):
        return "a TorchScript function whose source cannot be found"
    if isinstance(value, types.FunctionType) and value.__name__ == "<lambda>":
        return "a lambda whose source cannot be found"
    if isinstance(value, types.FunctionType):
        return "a function whose source cannot be found"
    if isinstance(value, type):
        return "a class that cannot be imported by name"
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return "a tensor"
        if isinstance(value, torch.nn.Module):
            return "a model instance"
    return "an object"


def _fix(value: Any, name: str, where: str) -> str:
    if isinstance(value, io.IOBase):
        return f"open the file inside {where}"
    if is_script_function(value):
        return "define it in a notebook cell with def under @torch.jit.script"
    if isinstance(value, types.FunctionType):
        return "define it with def in a notebook cell"
    if isinstance(value, type):
        return "define the class in a notebook cell, or import it from an installed package"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and where.endswith(".__init__"):
        return f"create it inside {where} (self.register_buffer keeps a tensor with the model)"
    if torch is not None and isinstance(value, torch.nn.Module):
        return f"build it inside {where}"
    return f"create `{name}` inside {where}"


def article(noun: str) -> str:
    """``a dict``, ``an argparse.Namespace``."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"
