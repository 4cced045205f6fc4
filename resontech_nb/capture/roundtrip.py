"""A written value is accepted only if its text rebuilds the live value: evaluated, then compared part by part.

``value_source`` writes ``Config(width=6)`` or ``argparse.Namespace(lr=0.1)``; a class whose
``__init__``/``__post_init__`` changes what it is given, or a repr that loses something, would give the
sites another value than the notebook's. The text is evaluated over the names model_def.py binds (the
notebook's own objects) and compared with ``==`` part by part (NaN equals NaN, a partial by its parts,
an object by its attributes, a function by its name and arguments).
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import functools
import math
import reprlib
import types
from collections.abc import Mapping
from typing import Any

from .refusals import article, type_name

_MAX_DEPTH = 20
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40


def rebuild_difference(expression: str, names: Mapping[str, Any], value: Any, label: str) -> str | None:
    """How ``expression`` (evaluated over ``names``) differs from ``value``, in words; None when it rebuilds it."""
    try:
        rebuilt = eval(expression, {"__builtins__": builtins, **names})  # noqa: S307 - text capture wrote itself
    except Exception as exc:  # noqa: BLE001 - the user's class refusing its own fields
        return f"rebuilding it raises {type(exc).__name__}: {exc}"
    return first_difference(value, rebuilt, label)


def first_difference(live: Any, rebuilt: Any, path: str, depth: int = 0) -> str | None:
    """Where ``rebuilt`` first differs from ``live`` (``path`` names the place), or None."""
    if live is rebuilt:
        return None
    if depth > _MAX_DEPTH:
        return f"{path} is nested too deeply to compare"
    if type(live) is not type(rebuilt):
        return f"{path} would be {article(type_name(rebuilt))} instead of {article(type_name(live))}"
    kind = type(live)
    if kind is float and math.isnan(live) and math.isnan(rebuilt):
        return None
    if kind in (list, tuple) or (isinstance(live, tuple) and hasattr(kind, "_fields")):
        if len(live) != len(rebuilt):
            return f"{path} would have {len(rebuilt)} items instead of {len(live)}"
        pairs = [(f"{path}[{i}]", a, b) for i, (a, b) in enumerate(zip(live, rebuilt, strict=True))]
        return _first(pairs, depth)
    if kind is dict:
        if list(live) != list(rebuilt):
            return f"{path} would have the keys {_short.repr(list(rebuilt))} instead of {_short.repr(list(live))}"
        return _first([(f"{path}[{k!r}]", live[k], rebuilt[k]) for k in live], depth)
    if kind is functools.partial:
        pairs = [(f"{path}.func", live.func, rebuilt.func), (f"{path}.args", live.args, rebuilt.args)]
        return _first(pairs + [(f"{path}.keywords", live.keywords, rebuilt.keywords)], depth)
    if kind is types.FunctionType:  # written from its own source text: the same function if it takes the same
        same = (live.__name__, live.__code__.co_varnames) == (rebuilt.__name__, rebuilt.__code__.co_varnames)
        return None if same else f"{path} would be another function"
    attributes = _attributes(live)
    if attributes is not None:
        others = _attributes(rebuilt) or {}
        if list(attributes) != list(others):
            ours, theirs = _short.repr(list(attributes)), _short.repr(list(others))
            return f"{path} would have the attributes {theirs} instead of {ours}"
        return _first([(f"{path}.{k}", v, others[k]) for k, v in attributes.items()], depth)
    try:
        equal = bool(live == rebuilt)
    except Exception:  # noqa: BLE001 - an __eq__ that cannot answer does not prove equality
        equal = False
    return None if equal else f"{path} would be {_short.repr(rebuilt)} instead of {_short.repr(live)}"


def _first(pairs: list[tuple[str, Any, Any]], depth: int) -> str | None:
    for path, a, b in pairs:
        found = first_difference(a, b, path, depth + 1)
        if found is not None:
            return found
    return None


def _attributes(value: Any) -> dict[str, Any] | None:
    """A plain-data object's attributes (a namespace, a dataclass instance), compared one by one; else None."""
    if type(value) in (argparse.Namespace, types.SimpleNamespace):
        return dict(vars(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "__dict__"):
            return dict(vars(value))
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return None
