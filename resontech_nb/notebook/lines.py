"""Reading a magic's line and cell: shell-quoted flags, input shapes, the model class a cell
defines or names, the state_dict a variable holds.

Everything here raises IPython's ``UsageError`` with a message that names the fix; ``usage_errors``
turns resontech_nb's own errors into one-line ``UsageError``s too, so a magic never shows a traceback.
"""

from __future__ import annotations

import ast
import difflib
import functools
import os
import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring
from traitlets import TraitError

from ..errors import ResonTechError


def usage_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into a one-line UsageError (IPython shows it without a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ResonTechError, ValueError, TraitError) as exc:
            raise UsageError(str(exc)) from None

    return wrapper


def defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def named_model_class(user_ns: dict[str, Any], name: str) -> type:
    """The class ``--name`` names, or a UsageError saying what ``name`` is instead."""
    import torch

    value = user_ns.get(name)
    if isinstance(value, type) and issubclass(value, torch.nn.Module):
        return value
    head = f"--name {name}: no torch.nn.Module subclass called {name}"
    if name not in user_ns:
        models = sorted(
            k
            for k, v in user_ns.items()
            if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == "__main__"
        )
        known = f"; model classes in the notebook: {', '.join(models)}" if models else ""
        raise UsageError(f"{head} (nothing of that name is defined{known}): check the name")
    if not isinstance(value, type):
        raise UsageError(f"{head} ({name} is a {type(value).__name__}): give the name of your nn.Module class")
    raise UsageError(
        f"{head} (class {name} does not derive from nn.Module): derive it from nn.Module, "
        "or give the name of your model class"
    )


def cell_model_class(tree: ast.Module, user_ns: dict[str, Any], name: str | None) -> type:
    """The model class a ``%%fl_model`` cell defines: the one ``--name`` names, else its only nn.Module subclass."""
    import torch

    if name:
        return named_model_class(user_ns, name)
    classes = [
        n.name
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and isinstance(user_ns.get(n.name), type)
        and issubclass(user_ns[n.name], torch.nn.Module)
    ]
    classes = list(dict.fromkeys(classes))
    if not classes:
        plain = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        if plain:
            raise UsageError(
                f"the cell defines no torch.nn.Module subclass ({', '.join(plain)} does not derive from "
                "nn.Module): derive your model class from nn.Module"
            )
        raise UsageError("the cell defines no torch.nn.Module subclass: define your model class in this cell")
    if len(classes) > 1:
        raise UsageError(
            f"the cell defines several nn.Module subclasses ({', '.join(classes)}): "
            f"say which is the model with %%fl_model --name {classes[-1]}"
        )
    return user_ns[classes[0]]


def state_dict_variable(user_ns: dict[str, Any], name: str) -> Any:
    """The state_dict in the notebook variable ``--init-weights`` names (a Module gives its own state_dict)."""
    import torch

    if name not in user_ns:
        raise UsageError(f"--init-weights {name}: no variable {name!r} in the notebook; define it first")
    value = user_ns[name]
    if isinstance(value, torch.nn.Module):
        return value.state_dict()
    if not isinstance(value, dict) or not value or not all(isinstance(v, torch.Tensor) for v in value.values()):
        raise UsageError(
            f"--init-weights {name}: {name} is a {type(value).__name__}, not a state_dict: "
            f"pass a variable holding model.state_dict()"
        )
    return value


def attach_negative_values(line: str) -> str:
    """``--input-shape -1,3`` -> ``--input-shape=-1,3``, so argparse does not read ``-1,3`` as an option."""
    return re.sub(r"(--input-shape)\s+(-\S*)", r"\1=\2", line)


def parse_line(magic: Callable[..., Any], line: str) -> Any:
    """``parse_argstring`` with shell quoting (``--shards "my data/shards"``, ``--job-name='a'``), and
    argparse's complaint turned into one that names the fix."""
    name = magic.__name__
    if os.name != "posix":  # backslashes in Windows paths: IPython's own splitting
        return parse_argstring(magic, line)
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%{name}: cannot split the line ({exc}): close the quote") from None
    try:
        return magic.parser.parse_args(argv)
    except UsageError as exc:
        message = str(exc)
        unknown = message.partition("unrecognized arguments:")[2].split()
        flags = [f for f in magic.parser._option_string_actions if f.startswith("--")]
        close = [m for flag in unknown if flag.startswith("-") for m in difflib.get_close_matches(flag, flags, 1)]
        hint = f" (did you mean {' '.join(close)}?)" if close else ""
        raise UsageError(f"%{name}: {message}{hint}; %{name}? lists its flags") from None


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``1,3,32,32`` (also ``(1, 3, 32, 32)``) -> a tuple of positive ints; anything else is a UsageError."""
    if text is None:
        return None
    example = "give positive integers like 1,3,32,32 (separated by commas)"
    text = text.strip().strip("'\"")  # IPython keeps the quotes of --input-shape "(1, 3)"
    body = text.strip().strip("()[]").strip()
    if not body:
        raise UsageError(f"--input-shape {text!r} is empty: {example}")
    parts = [part.strip() for part in body.split(",")]
    if parts[-1] == "" and len(parts) > 1:  # (4,) as Python writes a one-dimensional shape
        parts.pop()
    for part in parts:
        if not part.lstrip("-").isdigit():
            raise UsageError(f"--input-shape {text!r} is not a shape: {part!r} is not an integer; {example}")
        if int(part) < 1:
            raise UsageError(f"--input-shape {text!r} is not a shape: dimension {part} is not positive; {example}")
    return tuple(int(part) for part in parts)
