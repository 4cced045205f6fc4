"""Which names a piece of source reads: free names, annotation-only names, attribute chains, closure variables.

A class or function defined inside another function reads that function's variables through its
closure; those are taken from the closure (``closure_values``) and never from the notebook's globals.
A variable of the enclosing function that the closure does not hold (read only by a class body) is
reported by ``enclosing_locals`` so capture can refuse it by name.
"""

from __future__ import annotations

import ast
import linecache
import symtable
import types
from collections.abc import Iterator
from typing import Any

from ..errors import CaptureError
from .sources import methods

EMPTY_CELL = object()  # a closure cell whose variable was never assigned


def closure_values(obj: Any) -> dict[str, Any]:
    """The enclosing functions' variables that ``obj`` (a function, or a class's methods) reads, with values."""
    functions = [obj] if isinstance(obj, types.FunctionType) else list(methods(obj)) if isinstance(obj, type) else []
    found: dict[str, Any] = {}
    for fn in functions:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            if name == "__class__":  # the cell behind zero-argument super()
                continue
            try:
                found[name] = cell.cell_contents
            except ValueError:
                found[name] = EMPTY_CELL
    return found


def enclosing_locals(obj: Any) -> tuple[str, set[str]] | None:
    """For a class or function defined inside a function: (that function's name, the variables of the functions
    around it). None for a top-level definition or when the source cannot be read."""
    qualname = getattr(obj, "__qualname__", "")
    if "<locals>" not in qualname:
        return None
    first = obj if isinstance(obj, types.FunctionType) else next(methods(obj), None) if isinstance(obj, type) else None
    if first is None:
        return None
    code = first.__code__
    text = "".join(linecache.getlines(code.co_filename))
    try:
        tree = ast.parse(text)
        table = symtable.symtable(text, code.co_filename, "exec")
    except (SyntaxError, ValueError):
        return None
    chain = _enclosing_defs(tree, obj.__name__, code.co_firstlineno)
    if not chain:
        return None
    local_names: set[str] = set()
    for node in chain:
        fn_table = _table_at(table, node.name, node.lineno)
        if fn_table is not None:
            local_names.update(fn_table.get_locals())
    return chain[-1].name, local_names


def _enclosing_defs(tree: ast.AST, name: str, line: int) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions around the def/class ``name`` whose span holds ``line``, outermost first."""

    def visit(node: ast.AST, around: list) -> list | None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                if not start <= line <= (child.end_lineno or child.lineno):
                    continue
                if child.name == name and around:
                    return around
                inner = around + [child] if not isinstance(child, ast.ClassDef) else around
                found = visit(child, inner)
                if found is not None:
                    return found
            else:
                found = visit(child, around)
                if found is not None:
                    return found
        return None

    return visit(tree, []) or []


def _table_at(table: symtable.SymbolTable, name: str, line: int) -> symtable.Function | None:
    for child in table.get_children():
        if isinstance(child, symtable.Function) and child.get_name() == name and child.get_lineno() == line:
            return child
        found = _table_at(child, name, line)
        if found is not None:
            return found
    return None


def free_names(source: str) -> tuple[list[str], set[str], dict[str, set[str]]]:
    """Names ``source`` reads but does not bind, the subset used only in annotations, and attribute chains.

    ``source`` defines one thing at module level (a class, a def, or ``name = lambda ...``).
    """
    try:
        table = symtable.symtable(source, "<capture>", "exec")
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise CaptureError(f"cannot parse captured source (line {exc.lineno}: {exc.msg}): fix the cell") from None
    top_bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    found: dict[str, None] = {}
    for sym in table.get_symbols():
        if sym.is_referenced() and sym.get_name() not in top_bound:
            found[sym.get_name()] = None

    def walk(t: symtable.SymbolTable) -> None:
        for sym in t.get_symbols():
            name = sym.get_name()
            if sym.is_referenced() and sym.is_global() and name not in top_bound:
                found[name] = None
        for child in t.get_children():
            walk(child)

    for child in table.get_children():
        walk(child)

    annotation_names: set[str] = set()
    other_names: set[str] = set()
    annotations = [n for n in ast.walk(tree) for n in _annotation_nodes(n)]
    annotation_ids = {id(sub) for a in annotations for sub in ast.walk(a)}
    chains: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (annotation_names if id(node) in annotation_ids else other_names).add(node.id)
        elif isinstance(node, ast.Attribute):
            path = _attribute_path(node)
            if path is not None:
                root, rest = path
                chains.setdefault(root, set()).update(".".join(rest[:k]) for k in range(1, len(rest)))
    return list(found), annotation_names - other_names, chains


def _annotation_nodes(node: ast.AST) -> Iterator[ast.AST]:
    if isinstance(node, ast.arg) and node.annotation is not None:
        yield node.annotation
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
        yield node.returns
    elif isinstance(node, ast.AnnAssign):
        yield node.annotation


def _attribute_path(node: ast.Attribute) -> tuple[str, list[str]] | None:
    parts: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    return current.id, list(reversed(parts))
