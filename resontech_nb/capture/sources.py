"""Finding the source text of a class or function: its file or cell, ``inspect``, or the notebook's history."""

from __future__ import annotations
import __future__

import ast
import inspect
import linecache
import sys
import textwrap
import types
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import CaptureError
from .spec import TRAIN_FN_NAME
from .torchscript import script_original

NOTEBOOK_MODULES = frozenset({"__main__", "builtins"})
_FUTURE_ANNOTATIONS = __future__.annotations.compiler_flag


def unwrapped(value: Any) -> Any:
    """The function under decorators that keep ``__wrapped__`` (functools.wraps, lru_cache, torch.no_grad) or
    under ``torch.jit.script``."""
    original = script_original(value)
    if original is not None:
        return original
    if isinstance(value, type) or not hasattr(value, "__wrapped__"):
        return value
    try:
        return inspect.unwrap(value)
    except ValueError:  # a cycle of __wrapped__
        return value


def namespace_of(obj: Any, fallback: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The globals a class or function was defined in (``fallback`` for a class without methods)."""
    if isinstance(obj, types.FunctionType):
        return obj.__globals__
    for fn in methods(obj):
        return fn.__globals__
    if fallback is not None:
        return fallback
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is not None:
        return vars(module)
    return {}


def methods(cls: type) -> Iterator[types.FunctionType]:
    """The functions written in ``cls``'s body (not those a decorator such as @dataclass generated)."""
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if isinstance(member, types.FunctionType):
            member = inspect.unwrap(member)
            if (
                isinstance(member, types.FunctionType)
                and member.__qualname__.startswith(cls.__qualname__ + ".")
                and member.__code__.co_filename != "<string>"  # made by exec(), e.g. dataclass's __init__
            ):
                yield member


def future_annotations(obj: Any) -> bool:
    functions = [obj] if isinstance(obj, types.FunctionType) else list(methods(obj)) if isinstance(obj, type) else []
    return any(fn.__code__.co_flags & _FUTURE_ANNOTATIONS for fn in functions)


def class_source(cls: type, namespace: Mapping[str, Any] | None, cell_source: str | None) -> str:
    """The class's source: from its methods' file/cell, then ``inspect``, then the recorded cells."""
    for fn in methods(cls):
        lines = linecache.getlines(fn.__code__.co_filename)
        if not lines:
            continue
        source = find_def("".join(lines), cls.__name__, ast.ClassDef, fn.__code__.co_firstlineno)
        if source is not None:
            return source
    if getattr(cls, "__module__", None) not in NOTEBOOK_MODULES:
        try:
            return textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            pass
    for text in recorded_cells(cls, namespace, cell_source):
        source = find_def(text, cls.__name__, ast.ClassDef)
        if source is not None:
            return source
    raise CaptureError(
        f"cannot find the source of class {cls.__name__}: define it in a notebook cell or a .py file, "
        "then run %%fl_model again"
    )


def function_source(
    fn: types.FunctionType, name: str, namespace: Mapping[str, Any] | None, cell_source: str | None
) -> str:
    """A def's source, or ``name = lambda ...`` for a lambda assigned to ``name``."""
    is_lambda = fn.__name__ == "<lambda>"
    try:
        raw = inspect.getsource(fn)
    except (OSError, TypeError):
        raw = None
    if raw is not None:
        text = textwrap.dedent(raw)
        if not is_lambda:
            source = find_def(text, fn.__name__, (ast.FunctionDef, ast.AsyncFunctionDef))
            if source is not None:
                return source
        else:
            source = find_lambda(text, name)
            if source is not None:
                return source
            expression = lambda_source(fn)
            if expression is not None:
                return f"{name} = {expression}\n"
    if not is_lambda:
        for text in recorded_cells(fn, namespace, cell_source):
            source = find_def(text, fn.__name__, (ast.FunctionDef, ast.AsyncFunctionDef))
            if source is not None:
                return source
    what = "a lambda whose source cannot be found" if is_lambda else "a function whose source cannot be found"
    raise CaptureError(
        f"`{name}` is {what}: define it with def in a notebook cell or a .py file"
        + (f", or create it inside the class or {TRAIN_FN_NAME}" if is_lambda else "")
    )


def find_def(text: str, name: str, kinds: Any, line: int | None = None) -> str | None:
    """The source (decorators included, dedented) of the last def/class ``name`` in ``text``.

    With ``line``, the one whose span contains that line (a method's first line).
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines(keepends=True)
    match = None
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            end = node.end_lineno or node.lineno
            if line is None or start <= line <= end:
                if match is None or line is None and start > match[0] or line is not None and start > match[0]:
                    match = (start, end)
    if match is None:
        return None
    return textwrap.dedent("".join(lines[match[0] - 1 : match[1]]))


def find_lambda(text: str, name: str) -> str | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Lambda)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ):
            return f"{name} = {ast.get_source_segment(text, node.value)}\n"
    return None


def lambda_source(fn: types.FunctionType) -> str | None:
    """The text of the lambda expression ``fn`` was made from (parenthesized), found by its code's positions.

    Works wherever the lambda stands (a dict of activations, a call's argument): the innermost lambda on
    its first line that spans all of its code. None when its file or cell is not in linecache.
    """
    code = fn.__code__
    text = "".join(linecache.getlines(code.co_filename))
    spans = [
        (line, end_line, col, end_col)
        for line, end_line, col, end_col in code.co_positions()
        if None not in (line, end_line, col, end_col) and (line, col) != (end_line, end_col)
    ]
    if not text or not spans:
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    holders = [  # ast and co_positions both count columns in UTF-8 bytes
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
        and node.lineno == code.co_firstlineno
        and all(
            (node.lineno, node.col_offset) <= (line, col)
            and (end_line, end_col) <= (node.end_lineno or node.lineno, node.end_col_offset or 0)
            for line, end_line, col, end_col in spans
        )
    ]
    if not holders:
        return None
    innermost = min(holders, key=lambda n: ((n.end_lineno or 0) - n.lineno, (n.end_col_offset or 0) - n.col_offset))
    segment = ast.get_source_segment(text, innermost)
    return f"({segment})" if segment else None


def recorded_cells(obj: Any, namespace: Mapping[str, Any] | None, cell_source: str | None) -> Iterator[str]:
    """Cell texts that may hold ``obj``'s definition, newest first."""
    if cell_source:
        yield cell_source
    ns = namespace if namespace is not None else namespace_of(obj)
    history = ns.get("In") if isinstance(ns, Mapping) else None
    if not isinstance(history, list):
        return
    for entry in reversed(history):
        if not isinstance(entry, str) or not entry.strip():
            continue
        yield entry
        yield from _magic_cell_bodies(entry)


def _magic_cell_bodies(text: str) -> Iterator[str]:
    """The cell text inside ``get_ipython().run_cell_magic('fl_model', '', '...')`` history entries."""
    if "run_cell_magic" not in text:
        return
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_cell_magic"
            and len(node.args) == 3
            and isinstance(node.args[2], ast.Constant)
            and isinstance(node.args[2].value, str)
        ):
            yield node.args[2].value
