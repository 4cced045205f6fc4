"""Resolving the names captured code reads, and writing ``model_def.py`` from what they resolve to.

Every free name becomes one of: an import (installed modules only, by their public path), a constant,
an expression that rebuilds a value (``values.value_source``), or the source of a helper from the notebook
or from a file next to it, with that helper's own needs resolved the same way. Variables of an enclosing
function come from the closure, never from the notebook's globals.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

from ..errors import CaptureError
from .names import EMPTY_CELL, closure_values, enclosing_locals, free_names
from .origins import import_line, is_user_code, local_module_file, public_location
from .refusals import not_rebuilt_message, unwritable_message
from .roundtrip import rebuild_difference
from .shell_names import is_shell_object, unbound_refusal
from .sources import (
    NOTEBOOK_MODULES,
    class_source,
    function_source,
    future_annotations,
    lambda_source,
    namespace_of,
    unwrapped,
)
from .torchscript import is_script_function, script_call, scripted_by_call
from .values import Unrebuildable, is_constant, is_rebuildable_kind, value_source


class Writer:
    """Collects what model_def.py needs: imports, constants and helpers in dependency order."""

    def __init__(self, reserved: set[str], cell_source: str | None) -> None:
        self.reserved = set(reserved)
        self.cell_source = cell_source
        self.futures: set[str] = set()
        self.imports: dict[str, Any] = {}  # import line -> module/object (dedup)
        self.constants: dict[str, str] = {}  # name -> "NAME = repr"
        self.helpers: list[tuple[str, str]] = []  # (name, source) in dependency order
        self.bound: dict[str, Any] = {}  # name in model_def -> the object it stands for
        self.global_reads: dict[str, dict[str, Any]] = {}  # user -> notebook globals it reads
        self.places: dict[str, str] = {}  # user -> where its code creates things ("Net.__init__")
        self._visiting: set[int] = set()
        self._done: set[int] = set()

    # -- resolving names --------------------------------------------------------------
    def require(self, source: str, namespace: Mapping[str, Any], user: str, future: bool, obj: Any = None) -> None:
        """Resolve every free name of ``source`` (a def/class/assignment) from ``obj``'s closure or ``namespace``."""
        if future:
            self.futures.add("from __future__ import annotations")
        self.places.setdefault(user, _place(user, obj))
        names, soft, chains = free_names(source)
        closure = closure_values(obj) if obj is not None else {}
        enclosing = enclosing_locals(obj) if obj is not None else None
        for name in names:
            if name in closure:
                self._resolve_closure(name, closure[name], namespace, user, enclosing)
            elif enclosing is not None and name in enclosing[1]:
                raise CaptureError(
                    f"{user} reads `{name}`, a variable of the function {enclosing[0]}() it is defined in, which "
                    f"Python does not keep with the class: make `{name}` a constant at the top of a cell, or set it "
                    f"as a default argument of __init__"
                )
            else:
                self._resolve(name, namespace, user, soft=name in soft and future, chains=chains)

    def _resolve_closure(
        self, name: str, value: Any, namespace: Mapping[str, Any], user: str, enclosing: tuple[str, set[str]] | None
    ) -> None:
        where = f"the function {enclosing[0]}()" if enclosing else "the function it is defined in"
        if value is EMPTY_CELL:
            raise CaptureError(f"{user} reads `{name}`, a variable of {where} that has no value: assign it first")
        if self._already_bound(name, value, user):
            return
        try:
            self._write(name, value, namespace, user, {})
        except CaptureError as exc:
            raise CaptureError(f"{user} reads `{name}`, a variable of {where}: {exc}") from None

    def _resolve(
        self, name: str, namespace: Mapping[str, Any], user: str, *, soft: bool, chains: dict[str, set[str]]
    ) -> None:
        value = namespace.get(name, _UNDEFINED)
        if _is_dunder(name) and not isinstance(value, types.ModuleType):
            return  # module dunders (__name__, __file__): model_def has its own
        if value is _UNDEFINED or (is_shell_object(name, value) and not isinstance(value, types.ModuleType)):
            refusal = unbound_refusal(name, value is not _UNDEFINED, user)
            if refusal is not None and not soft:
                raise CaptureError(refusal)
            return  # a plain built-in (open, exit, input ...): the process on the site has its own
        self.global_reads.setdefault(user, {})[name] = value
        if self._already_bound(name, value, user):
            return
        try:
            self._write(name, value, namespace, user, chains)
        except CaptureError:
            if soft:
                return
            raise

    def where(self, user: str) -> str:
        """Where ``user``'s code creates what it needs: ``Net.__init__`` for a class, the function itself."""
        return self.places.get(user, user)

    def _already_bound(self, name: str, value: Any, user: str) -> bool:
        if name not in self.bound:
            return False
        if self.bound[name] is value or (is_constant(value) and self.bound[name] == value):
            return True
        if name in self.reserved:
            raise CaptureError(
                f"{user} uses the name {name!r}, which model_def.py needs for the model or its FL functions: rename it"
            )
        raise CaptureError(f"name {name!r} means two different things to the captured code: rename one of them")

    def _write(
        self, name: str, value: Any, namespace: Mapping[str, Any], user: str, chains: dict[str, set[str]]
    ) -> None:
        self.bound[name] = value
        if isinstance(value, types.ModuleType):
            self._write_module(name, value, user, chains.get(name, set()))
        elif is_constant(value):
            self.constants[name] = f"{name} = {value!r}"
        elif is_user_code(value, namespace):
            self._write_helper(name, value, namespace, user)
        elif (
            isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))
            or is_script_function(value)
            or not is_rebuildable_kind(value)
        ):
            line = import_line(name, value)
            if line is None:
                raise CaptureError(unwritable_message(name, value, user, self.where(user)))
            self.imports[line] = value
        else:
            self._write_value(name, value, namespace, user)

    def _write_value(self, name: str, value: Any, namespace: Mapping[str, Any], user: str) -> None:
        """``name = <expression>``, accepted only if the expression rebuilds the live value."""
        try:
            expression = value_source(value, lambda obj: self._ref(obj, namespace, user, name))
        except Unrebuildable as exc:
            raise CaptureError(unwritable_message(name, value, user, self.where(user), exc.value, exc.path)) from None
        difference = rebuild_difference(expression, self.bound, value, name)
        if difference is not None:
            raise CaptureError(not_rebuilt_message(name, value, user, self.where(user), difference))
        self.helpers.append((name, f"{name} = {expression}\n"))

    def _ref(self, obj: Any, namespace: Mapping[str, Any], user: str, holder: str) -> str:
        """The name (or dotted path, or a lambda's own text) model_def.py uses for a class, function or module
        inside the value of the global ``holder``."""
        if isinstance(obj, types.ModuleType):
            self._import_module_path(obj.__name__, obj, user)
            return obj.__name__
        if is_user_code(obj, namespace):
            func = unwrapped(obj)
            if isinstance(func, types.FunctionType) and func.__name__ == "<lambda>":
                return self._lambda_expression(func, holder)
            real = func.__name__
            if not self._already_bound(real, obj, user):
                self._write(real, obj, namespace, user, {})
            return real
        found = public_location(obj)
        if found is None:
            raise Unrebuildable(obj)
        module_name, attr = found
        self._import_module_path(module_name, sys.modules[module_name], user)
        return f"{module_name}.{attr}"

    def _lambda_expression(self, fn: types.FunctionType, holder: str) -> str:
        """A lambda inside a value (``{"gelu": lambda x: ...}``) is written as its own text, its names resolved."""
        expression = lambda_source(fn)
        if expression is None:
            raise Unrebuildable(fn)
        self.require(expression, fn.__globals__, holder, future_annotations(fn), fn)
        return expression

    def _import_module_path(self, module_name: str, module: types.ModuleType, user: str) -> None:
        top = module_name.split(".")[0]
        self._check_module(module_name, module, module_name, user)
        if not self._already_bound(top, sys.modules[top], user):
            self.bound[top] = sys.modules[top]
        self.imports[f"import {module_name}"] = module

    def _check_module(self, name: str, module: types.ModuleType, mod_name: str, user: str) -> None:
        file = local_module_file(mod_name)
        if file is not None:
            raise CaptureError(
                f"`{name}` used by {user} is the module {mod_name} from {file}, a file next to the notebook that "
                f"the FL sites do not have: import what the model needs by name (from {mod_name} import ...) "
                "so its code is written into model_def.py"
            )
        if mod_name in NOTEBOOK_MODULES or sys.modules.get(mod_name) is not module:
            raise CaptureError(
                f"{name!r} used by {user} is a module that cannot be imported by name ({mod_name}): "
                "import it with a plain import statement"
            )

    def _write_module(self, name: str, module: types.ModuleType, user: str, chain: set[str]) -> None:
        mod_name = module.__name__
        self._check_module(name, module, mod_name, user)
        if name == mod_name:
            self.imports[f"import {mod_name}"] = module
            for attr_path in sorted(chain):  # torch.nn.functional.relu(...) needs torch.nn.functional imported
                sub = f"{mod_name}.{attr_path}"
                if isinstance(sys.modules.get(sub), types.ModuleType):
                    self.imports[f"import {sub}"] = sys.modules[sub]
        else:
            self.imports[f"import {mod_name} as {name}"] = module

    def _write_helper(self, name: str, value: Any, namespace: Mapping[str, Any], user: str) -> None:
        key = id(value)
        func = unwrapped(value)  # a decorated def: its source carries the decorators
        real_name = getattr(func, "__name__", name)
        if key in self._visiting or key in self._done:
            if real_name != name and key in self._done:
                self.constants.pop(name, None)
                self.helpers.append((name, f"{name} = {real_name}\n"))
            return
        if isinstance(value, type):
            source = class_source(value, namespace, self.cell_source)
            inner_ns = namespace_of(value, namespace)
            future = future_annotations(value)
            inner_obj: Any = value
        elif isinstance(func, types.FunctionType):
            source = function_source(func, name, namespace, self.cell_source)
            inner_ns = func.__globals__
            future = future_annotations(func)
            inner_obj = func
        else:
            raise CaptureError(unwritable_message(name, value, user, self.where(user)))
        rescript = is_script_function(value) and scripted_by_call(source)  # f = torch.jit.script(g)
        label = real_name if real_name != "<lambda>" else name
        if real_name != name and real_name != "<lambda>":
            stands_for = func if rescript else value
            if real_name in self.bound and self.bound[real_name] is not stands_for:
                raise CaptureError(
                    f"{name!r} is another name for {real_name!r}, and {real_name!r} means something else here: "
                    "rename one of them"
                )
            self.bound[real_name] = stands_for
        self._visiting.add(key)
        try:
            self.require(source, inner_ns, label, future, inner_obj)
        finally:
            self._visiting.discard(key)
        self._done.add(key)
        self.helpers.append((label, source))
        if rescript:
            self._import_module_path("torch", sys.modules["torch"], user)
            self.helpers.append((name, script_call(name, real_name)))
        elif real_name != name and real_name != "<lambda>":
            self.helpers.append((name, f"{name} = {real_name}\n"))

    # -- rendering ------------------------------------------------------------------------
    def import_lines(self) -> list[str]:
        return sorted(self.imports, key=lambda line: (line.startswith("from "), line.lower()))

    def helper_names(self) -> list[str]:
        return list(self.constants) + [name for name, _ in self.helpers]

    def render(self, main_source: str, tail_blocks: list[str], what: str) -> str:
        blocks = []
        if self.futures or self.imports:
            spacer = [""] if self.futures and self.imports else []
            blocks.append("\n".join([*sorted(self.futures), *spacer, *self.import_lines()]) + "\n")
        if self.constants:
            blocks.append("\n".join(self.constants.values()) + "\n")
        blocks.extend(src.rstrip("\n") + "\n" for _, src in self.helpers)
        blocks.append(main_source.rstrip("\n") + "\n")
        blocks.extend(block.rstrip("\n") + "\n" for block in tail_blocks if block)
        header = f"# model_def.py: {what} with the imports and helpers they need, generated from the notebook.\n"
        return header + "\n" + "\n\n".join(blocks)  # two blank lines between top-level definitions (PEP 8)


_UNDEFINED = object()


def _is_dunder(name: str) -> bool:
    """``__name__``, ``__file__`` (not IPython's ``__`` and ``___``, the outputs before last)."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _place(user: str, obj: Any) -> str:
    if isinstance(obj, type):
        return f"{user}.__init__"
    if isinstance(obj, types.FunctionType) and obj.__name__ == "<lambda>":
        return f"the lambda in {user}"
    return user
