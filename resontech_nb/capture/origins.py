"""Where a value comes from: the notebook, a ``.py`` file next to it, or an installed module (and its public path).

Code from the notebook and from files next to it is written into ``model_def.py``; only installed modules
(the standard library, site-packages, editable installs) may be imported there, because only they exist on
an FL site. Imports use the shortest public module that holds the object (``torch.nn``, not
``torch.nn.modules.transformer``), so a site with another version of the library still finds it.
"""

from __future__ import annotations

import functools
import importlib
import sys
import sysconfig
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .sources import NOTEBOOK_MODULES, unwrapped

# Installed with the package; the job builder rewrites its jobcode imports for the sites.
_ALWAYS_INSTALLED = frozenset({"resontech_nb"})


@functools.lru_cache(maxsize=1)
def _install_dirs() -> tuple[Path, ...]:
    import site

    names = ("stdlib", "platstdlib", "purelib", "platlib")
    dirs = {sysconfig.get_paths().get(name) for name in names}
    dirs.update(getattr(site, "getsitepackages", list)())
    dirs.add(getattr(site, "getusersitepackages", lambda: None)())
    return tuple(Path(d).resolve() for d in dirs if d)


@functools.lru_cache(maxsize=1)
def _distribution_roots() -> frozenset[str]:
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())


def local_module_file(module_name: str) -> str | None:
    """The file of ``module_name`` if it is a module next to the notebook (not installed), else None."""
    if not module_name or module_name in NOTEBOOK_MODULES:
        return None
    root = module_name.split(".")[0]
    if root in sys.builtin_module_names or root in getattr(sys, "stdlib_module_names", ()) or root in _ALWAYS_INSTALLED:
        return None
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    path = Path(file).resolve()
    if any(path.is_relative_to(d) for d in _install_dirs()):
        return None
    if root in _distribution_roots():  # an editable install: the sites install it too
        return None
    return file


def is_user_code(value: Any, namespace: Mapping[str, Any]) -> bool:
    """A class or function from the notebook or from a ``.py`` file next to it: its source is written."""
    value = unwrapped(value)
    if not isinstance(value, (type, types.FunctionType)):
        return False
    module = getattr(value, "__module__", None)
    if module in NOTEBOOK_MODULES or module == namespace.get("__name__"):
        return True
    return isinstance(module, str) and local_module_file(module) is not None


def public_location(value: Any, name: str | None = None) -> tuple[str, str] | None:
    """``(module, attribute)`` of an importable module holding ``value``: the shortest public one."""
    module_name = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(module_name, str) and isinstance(qualname, str) and module_name not in NOTEBOOK_MODULES:
        if "." not in qualname and "<" not in qualname and local_module_file(module_name) is None:
            parts = module_name.split(".")
            for k in range(1, len(parts)):
                prefix = ".".join(parts[:k])
                if any(p.startswith("_") for p in parts[:k]):
                    break
                if _holds(sys.modules.get(prefix), qualname, value):
                    return prefix, qualname
            if _reachable(module_name, qualname, value):
                return module_name, qualname
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) or not isinstance(
        value, (int, float, str, bytes, tuple, list, dict, set)
    ):
        return _search_modules(name or getattr(value, "__name__", None), value)
    return None


def import_line(name: str, value: Any) -> str | None:
    """``from mod import attr [as name]`` if ``value`` is reachable by name from an installed module."""
    found = public_location(value, name)
    if found is None:
        return None
    module_name, attr = found
    return f"from {module_name} import {attr}" + ("" if attr == name else f" as {name}")


def _holds(module: Any, attr: str, value: Any) -> bool:
    try:
        return module is not None and getattr(module, attr, None) is value
    except Exception:  # noqa: BLE001 - lazy modules may raise on getattr
        return False


def _reachable(module_name: str, attr: str, value: Any) -> bool:
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - not importable means not reachable
            return False
    return _holds(module, attr, value)


def _search_modules(name: str | None, value: Any) -> tuple[str, str] | None:
    """A public, installed, loaded module holding ``value`` as an attribute (shortest module name wins)."""
    best: tuple[str, str] | None = None
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name in NOTEBOOK_MODULES or any(p.startswith("_") for p in module_name.split(".")):
            continue
        for attr in (name, getattr(value, "__name__", None)):
            if not isinstance(attr, str) or attr.startswith("_"):
                continue
            if _holds(module, attr, value) and (best is None or len(module_name) < len(best[0])):
                if local_module_file(module_name) is None:
                    best = (module_name, attr)
    return best
