"""Names the notebook's shell put there, not the user: IPython's and ipykernel's objects, and plain built-ins.

IPython injects ``open`` (a wrapper of ``io.open``), ``exit``/``quit``, ``get_ipython``, ``In``/``Out`` and
the history names (``_``, ``_i``, ``_oh`` ...) into the notebook's namespace (its ``user_ns_hidden``
records them) and ``display`` into builtins; ipykernel swaps ``input`` and its debugger adds ``execfile``
and ``runfile``. ``model_def.py`` runs in a plain Python process, where only the plain built-ins exist.

Whether a name is the shell's is decided by identity (the value is the object the shell put under that
name), so a user's own ``def display(...)`` or ``open = my_open`` is captured as theirs. Reads only
``sys.modules``: capture imports nothing from IPython.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any

# What site.py adds to builtins in every plain process, and the built-ins a shell swaps for its own wrapper.
_SITE_BUILTINS = frozenset({"exit", "quit", "help", "copyright", "credits", "license"})
_SHELL_WRAPPED = frozenset({"open", "input"})
_CONSTANTS = frozenset({"None", "True", "False", "Ellipsis", "NotImplemented", "__debug__"})
_SHELL_PACKAGES = ("IPython", "ipykernel", "_pydev", "pydev", "debugpy")
_INPUT_HISTORY = frozenset({"In", "_ih", "_i", "_ii", "_iii"})
_OUTPUT_HISTORY = frozenset({"Out", "_oh", "_", "__", "___"})
_MISSING = object()


def is_plain_builtin(name: str) -> bool:
    """``name`` is a built-in of a plain ``python`` process (where model_def.py runs on an FL site)."""
    if name in _SITE_BUILTINS or name in _SHELL_WRAPPED or name in _CONSTANTS:
        return True
    value = vars(builtins).get(name, _MISSING)
    return isinstance(value, (type, types.BuiltinFunctionType)) and value.__module__ == "builtins"


def is_shell_builtin(name: str) -> bool:
    """``name`` is in builtins only because the notebook's shell put it there (``display``, ``get_ipython``)."""
    return name in vars(builtins) and not is_plain_builtin(name)


def is_shell_object(name: str, value: Any) -> bool:
    """``value`` is what IPython or ipykernel put under ``name``, not something the user defined."""
    shell = _running_shell()
    hidden = getattr(shell, "user_ns_hidden", None)
    if isinstance(hidden, dict) and hidden.get(name, _MISSING) is value:
        return True
    if vars(builtins).get(name, _MISSING) is value and is_shell_builtin(name):
        return True
    return _from_shell(value) and (is_plain_builtin(name) or is_shell_builtin(name))


def unbound_refusal(name: str, from_shell: bool, user: str) -> str | None:
    """Why ``user`` cannot read ``name``, which the user did not define (``from_shell``: the shell put it into the
    namespace); None for a plain built-in, which needs nothing written."""
    if is_plain_builtin(name):
        return None
    if from_shell or is_shell_builtin(name):
        return notebook_only_message(name, user)
    return f"name {name!r} used by {user} is not defined in the notebook: define or import it in the cell"


def notebook_only_message(name: str, user: str) -> str:
    """Why the shell's ``name`` (one without a plain built-in of that name) cannot be used by ``user``."""
    if name == "display":
        what, fix = "IPython's display()", f"use print() in {user} instead"
    elif name == "get_ipython":
        what, fix = "IPython's get_ipython()", f"remove it from {user}"
    elif name in _INPUT_HISTORY or _numbered(name, "_i"):
        what, fix = "the notebook's input history", f"remove it from {user}"
    elif name in _OUTPUT_HISTORY or _numbered(name, "_"):
        what = "the notebook's output history"
        fix = f"assign the value you need to a name of your own in a cell and use that name in {user}"
    elif name == "_dh":
        what, fix = "the notebook's directory history", f"remove it from {user}"
    else:
        what, fix = "a name the notebook's kernel provides", f"remove it from {user}"
    return (
        f"`{name}` used by {user} is {what}, which exists only in the notebook, not where model_def.py runs "
        f"(a plain Python process on each FL site): {fix}"
    )


def _numbered(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name[len(prefix) :].isdigit()


def _running_shell() -> Any:
    getipython = sys.modules.get("IPython.core.getipython")
    if getipython is None:
        return None
    try:
        return getipython.get_ipython()
    except Exception:  # noqa: BLE001 - no shell is as good as none
        return None


def _from_shell(value: Any) -> bool:
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        module = type(value).__module__
    return isinstance(module, str) and module.split(".")[0] in _SHELL_PACKAGES
