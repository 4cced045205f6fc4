"""What a value becomes in ``model_def.py``: a literal, an expression that rebuilds it, or a refusal.

Plain constants are written with ``repr``. Values that can be rebuilt from source are written as an
expression: ``functools.partial`` of importable or captured callables, ``torch.device``, ``torch.dtype``,
``torch.Size``, enum members, dataclass and namedtuple instances, ``argparse.Namespace`` and
``types.SimpleNamespace``, ``pathlib`` paths, ``range``/``slice``, and containers of all these.
Callables, classes and modules inside them are handed to ``ref``, which imports them or writes their
source and returns the name (or, for a lambda, the expression) to use. The writer then checks that the
expression rebuilds the live value (``roundtrip``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import functools
import keyword
import math
import pathlib
import sys
import types
from collections.abc import Callable
from typing import Any

from .torchscript import is_script_function

_MAX_DEPTH = 20
_NAMESPACES = (argparse.Namespace, types.SimpleNamespace)


class Unrebuildable(Exception):
    """``value`` (part of a larger one, at ``path`` inside it: ``['gelu']``, ``.lr``, ``[1]``) has no source form."""

    def __init__(self, value: Any, path: str = "") -> None:
        super().__init__(type(value).__name__)
        self.value = value
        self.path = path


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
        isinstance(value, (functools.partial, enum.Enum, range, slice, tuple, list, dict, set, float, pathlib.PurePath))
        or type(value) in _NAMESPACES
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or _torch_kind(value) is not None
    )


def value_source(value: Any, ref: Callable[[Any], str], depth: int = 0, path: str = "") -> str:
    """A Python expression that rebuilds ``value``; ``ref(obj)`` names a callable, class or module.

    ``path`` is where ``value`` sits inside the global being written; an ``Unrebuildable`` carries it.
    """
    if depth > _MAX_DEPTH:
        raise Unrebuildable(value, path)
    if is_constant(value):
        return repr(value)

    def again(item: Any, where: str) -> str:
        return value_source(item, ref, depth + 1, path + where)

    def named(obj: Any) -> str:
        try:
            return ref(obj)
        except Unrebuildable as exc:
            raise Unrebuildable(exc.value, exc.path or path) from None

    kind = type(value)
    if kind is float:  # nan and the infinities have no literal
        return f"float({str(value)!r})" if math.isnan(value) or math.isinf(value) else repr(value)
    if kind is tuple:
        items = [again(v, f"[{i}]") for i, v in enumerate(value)]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if kind is list:
        return f"[{', '.join(again(v, f'[{i}]') for i, v in enumerate(value))}]"
    if kind is set:
        return f"{{{', '.join(again(v, ' (an item)') for v in value)}}}" if value else "set()"
    if kind is dict:
        return "{" + ", ".join(f"{again(k, ' (a key)')}: {again(v, f'[{k!r}]')}" for k, v in value.items()) + "}"
    if kind is functools.partial:
        args = [_callable(value.func, named, again, path)]
        args += [again(a, f".args[{i}]") for i, a in enumerate(value.args)]
        args += [f"{k}={again(v, f'.keywords[{k!r}]')}" for k, v in value.keywords.items()]
        return f"{named(functools.partial)}({', '.join(args)})"
    if kind in (range, slice):
        parts = (again(getattr(value, a), f".{a}") for a in ("start", "stop", "step"))
        return f"{kind.__name__}({', '.join(parts)})"
    if kind in _NAMESPACES:
        return f"{named(kind)}({_keywords(vars(value), again)})"
    if isinstance(value, pathlib.PurePath):
        concrete = kind is type(pathlib.Path())
        return f"{named(pathlib.Path if concrete else kind)}({str(value)!r})"
    if isinstance(value, enum.Enum):
        if isinstance(value.name, str) and getattr(kind, value.name, None) is value:
            return f"{named(kind)}.{value.name}"
        return f"{named(kind)}({again(value.value, '.value')})"  # a combination of flags
    torch_kind = _torch_kind(value)
    if torch_kind is not None:
        return _torch_source(value, torch_kind, named, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        for f in fields:
            if not f.init:
                raise Unrebuildable(value, path)
        args = ", ".join(f"{f.name}={again(getattr(value, f.name), '.' + f.name)}" for f in fields)
        return f"{named(kind)}({args})"
    if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a namedtuple
        return f"{named(kind)}({', '.join(again(v, f'.{n}') for n, v in zip(kind._fields, value, strict=False))})"
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)):
        return named(value)
    if is_script_function(value):
        return named(value)
    raise Unrebuildable(value, path)


def _keywords(items: dict[str, Any], again: Callable[[Any, str], str]) -> str:
    """``a=1, b=2`` (or ``**{'a-b': 1}`` when a key is no identifier) for a namespace's attributes."""
    if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in items):
        return ", ".join(f"{k}={again(v, '.' + k)}" for k, v in items.items())
    return "**{" + ", ".join(f"{k!r}: {again(v, f'.{k}')}" for k, v in items.items()) + "}"


def _callable(func: Any, named: Callable[[Any], str], again: Callable[[Any, str], str], path: str) -> str:
    """A partial's function: a nested partial, or a callable ``named`` can refer to."""
    if type(func) is functools.partial:
        return again(func, ".func")
    if isinstance(func, (type, types.FunctionType, types.BuiltinFunctionType)) or is_script_function(func):
        return named(func)
    raise Unrebuildable(func, path + ".func")


def _torch_kind(value: Any) -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    for kind in ("device", "dtype", "Size"):
        if isinstance(value, getattr(torch, kind)):
            return kind
    return None


def _torch_source(value: Any, kind: str, ref: Callable[[Any], str], path: str) -> str:
    torch = sys.modules["torch"]
    if kind == "device":
        return f"{ref(torch)}.device({str(value)!r})"
    if kind == "Size":
        return f"{ref(torch)}.Size({list(value)!r})"
    name = str(value).removeprefix("torch.")
    if getattr(torch, name, None) is not value:
        raise Unrebuildable(value, path)
    return f"{ref(torch)}.{name}"
