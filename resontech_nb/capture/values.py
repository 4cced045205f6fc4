"""What a value becomes in ``model_def.py``: a literal, an expression that rebuilds it, or a refusal.

Plain constants are written with ``repr``. Values that can be rebuilt from source are written as an
expression: ``functools.partial`` of importable or captured callables, ``torch.device``, ``torch.dtype``,
``torch.Size``, enum members, dataclass and namedtuple instances, ``range``/``slice``, and containers
of all these. Callables, classes and modules inside them are handed to ``ref``, which imports them or
writes their source and returns the name to use.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import io
import math
import sys
import types
from collections.abc import Callable
from typing import Any

from .spec import TRAIN_FN_NAME

_MAX_DEPTH = 20


class Unrebuildable(Exception):
    """``value`` (part of a larger one) has no source form."""

    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def is_constant(value: Any) -> bool:
    """int, float, str, bool, None, bytes and tuples/lists/dicts/sets of them, if repr round-trips."""
    if not _plain(value):
        return False
    try:
        back = ast.literal_eval(repr(value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(back) is type(value) and back == value


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if value is None or type(value) in (bool, int, float, complex, str, bytes):
        return True
    if type(value) in (tuple, list, set):
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def is_rebuildable_kind(value: Any) -> bool:
    """Values ``value_source`` knows (so a failure inside them names the part that has no source form)."""
    return (
        isinstance(value, (functools.partial, enum.Enum, range, slice, tuple, list, dict, set, float))
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or _torch_kind(value) is not None
    )


def value_source(value: Any, ref: Callable[[Any], str], depth: int = 0) -> str:
    """A Python expression that rebuilds ``value``; ``ref(obj)`` names a callable, class or module."""
    if depth > _MAX_DEPTH:
        raise Unrebuildable(value)
    if is_constant(value):
        return repr(value)

    def again(item: Any) -> str:
        return value_source(item, ref, depth + 1)

    kind = type(value)
    if kind is float:  # nan and the infinities have no literal
        return f"float({str(value)!r})" if math.isnan(value) or math.isinf(value) else repr(value)
    if kind is tuple:
        items = [again(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if kind is list:
        return f"[{', '.join(again(v) for v in value)}]"
    if kind is set:
        return f"{{{', '.join(again(v) for v in value)}}}" if value else "set()"
    if kind is dict:
        return "{" + ", ".join(f"{again(k)}: {again(v)}" for k, v in value.items()) + "}"
    if kind is functools.partial:
        args = [_callable(value.func, ref, depth)] + [again(a) for a in value.args]
        args += [f"{k}={again(v)}" for k, v in value.keywords.items()]
        return f"{ref(functools.partial)}({', '.join(args)})"
    if kind in (range, slice):
        return f"{kind.__name__}({again(value.start)}, {again(value.stop)}, {again(value.step)})"
    if isinstance(value, enum.Enum):
        if getattr(kind, value.name, None) is not value:
            raise Unrebuildable(value)
        return f"{ref(kind)}.{value.name}"
    torch_kind = _torch_kind(value)
    if torch_kind is not None:
        return _torch_source(value, torch_kind, ref)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        if any(not f.init for f in fields):
            raise Unrebuildable(value)
        args = ", ".join(f"{f.name}={again(getattr(value, f.name))}" for f in fields)
        return f"{ref(kind)}({args})"
    if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a namedtuple
        return f"{ref(kind)}({', '.join(again(v) for v in value)})"
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)):
        return ref(value)
    raise Unrebuildable(value)


def _callable(func: Any, ref: Callable[[Any], str], depth: int) -> str:
    if type(func) is functools.partial:
        return value_source(func, ref, depth + 1)
    if isinstance(func, (type, types.FunctionType, types.BuiltinFunctionType)):
        return ref(func)
    raise Unrebuildable(func)


def _torch_kind(value: Any) -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    for kind in ("device", "dtype", "Size"):
        if isinstance(value, getattr(torch, kind)):
            return kind
    return None


def _torch_source(value: Any, kind: str, ref: Callable[[Any], str]) -> str:
    torch = sys.modules["torch"]
    if kind == "device":
        return f"{ref(torch)}.device({str(value)!r})"
    if kind == "Size":
        return f"{ref(torch)}.Size({list(value)!r})"
    name = str(value).removeprefix("torch.")
    if getattr(torch, name, None) is not value:
        raise Unrebuildable(value)
    return f"{ref(torch)}.{name}"


def unwritable_message(name: str, value: Any, user: str, part: Any = None) -> str:
    """Why ``name`` cannot be written, naming the value (or its part without a source form) and its type."""
    inner = ""
    if part is not None and part is not value:
        inner = f" (it holds {_describe(part)} of type {_type_name(part)}, which has no source form)"
    return (
        f"`{name}` used by {user} is {_describe(value)} ({_type_name(value)}){inner} and cannot be written into "
        f"model_def.py: create it inside the class or {TRAIN_FN_NAME}"
    )


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")


def _describe(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "an open file"
    if isinstance(value, types.LambdaType) and getattr(value, "__name__", "") == "<lambda>":
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
