"""Model capture: a model class (and ``fl_train_model``) from a notebook, as a self-contained ``model_def.py``.

``capture(Net)`` writes the class source plus exactly what it needs: the imports behind the names it
uses (``nn`` -> ``import torch.nn as nn``), helper functions and classes from other cells (with their
own needs, recursively) and simple constants (``HIDDEN = 16``). A name that cannot be written down
(an open file, a tensor, an object) or that is not defined fails here, naming the fix, instead of on
an FL site as ``name 'nn' is not defined``. ``preflight`` then builds the class from the generated
text alone, counts its parameters and, given an input shape, runs one forward pass on CPU.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import importlib
import inspect
import io
import linecache
import logging
import symtable
import sys
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CaptureError, PreflightError

log = logging.getLogger(__name__)

TRAIN_FN_NAME = "fl_train_model"
EVAL_FN_NAME = "fl_evaluate_model"
DEFAULT_TRAIN_IMPORT = "from rt_default_train import default_evaluate_model, default_train_model"
# Names IPython adds to builtins while it runs; they do not exist on an FL site.
_IPYTHON_BUILTINS = frozenset({"display", "get_ipython", "__IPYTHON__"})
_NOTEBOOK_MODULES = frozenset({"__main__", "builtins"})
_FUTURE_ANNOTATIONS = __future__.annotations.compiler_flag


def default_train_block(class_name: str) -> str:
    """The ``fl_train_model`` written when the cell defines none (``rt_default_train`` ships in custom/)."""
    return (
        f"{DEFAULT_TRAIN_IMPORT}\n\n\n"
        f"def {TRAIN_FN_NAME}(payload):\n"
        f"    return default_train_model({class_name}, payload)\n\n\n"
        f"def {EVAL_FN_NAME}(payload):\n"
        f"    return default_evaluate_model({class_name}, payload)\n"
    )


@dataclass
class ModelSpec:
    """A captured model: the text of the job's ``model_def.py`` and what preflight learned about it."""

    class_name: str
    source: str
    has_train_fn: bool
    imports: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    param_count: int | None = None
    size_bytes: int | None = None
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1e6

    def summary(self) -> str:
        lines = [f"ModelSpec {self.class_name}"]
        if self.param_count is not None:
            lines[0] += f": {self.param_count:,} parameters, {self.size_mb:.3g} MB"
        if self.input_shape is not None:
            out = f" -> {self.output_shape}" if self.output_shape is not None else ""
            lines.append(f"  forward pass: {self.input_shape}{out}")
        lines.append(f"  fl_train_model: {'from the cell' if self.has_train_fn else 'default training loop'}")
        lines.append(f"  imports: {', '.join(self.imports) if self.imports else '(none)'}")
        if self.helpers:
            lines.append(f"  helpers: {', '.join(self.helpers)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    def load_module(self) -> types.ModuleType:
        """Execute ``source`` in a fresh module (the default training loop's import is left out)."""
        return _exec_source(self.source, self.class_name)

    def load_class(self) -> type:
        """The model class built from ``source`` alone, e.g. ``net = spec.load_class()()``."""
        return getattr(self.load_module(), self.class_name)


# -- public functions --------------------------------------------------------------------------


def capture(
    model_cls: type,
    train_fn: Callable[..., Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
    cell_source: str | None = None,
) -> ModelSpec:
    """Capture ``model_cls`` (and ``train_fn`` as ``fl_train_model``) into a ``ModelSpec``; run preflight.

    ``namespace`` is where free names are looked up (default: where the class was defined, i.e. the
    notebook's namespace for a class from a cell). ``cell_source`` helps find the class's source when
    Python cannot (a class without methods defined in a notebook cell).
    """
    _check_model_class(model_cls)
    class_name = model_cls.__name__
    writer = _Writer(reserved={class_name, TRAIN_FN_NAME}, cell_source=cell_source)
    writer.bound[class_name] = model_cls
    class_src = _class_source(model_cls, namespace, cell_source)
    class_ns = namespace if namespace is not None else _namespace_of(model_cls)
    writer.require(class_src, class_ns, class_name, _future_annotations(model_cls))

    train_src = ""
    if train_fn is not None:
        if not callable(train_fn) or not isinstance(train_fn, types.FunctionType):
            raise CaptureError(
                f"train_fn must be a function defined with def, got {type(train_fn).__name__}: "
                "define def fl_train_model(payload): ... in the cell"
            )
        fn_src = _function_source(train_fn, train_fn.__name__, namespace, cell_source)
        fn_ns = namespace if namespace is not None else train_fn.__globals__
        if train_fn.__name__ != TRAIN_FN_NAME:
            writer.reserved.add(train_fn.__name__)
        writer.bound[train_fn.__name__] = train_fn
        writer.require(fn_src, fn_ns, TRAIN_FN_NAME, _future_annotations(train_fn))
        train_src = fn_src
        if train_fn.__name__ != TRAIN_FN_NAME:
            train_src += f"\n\n{TRAIN_FN_NAME} = {train_fn.__name__}\n"
    else:
        train_src = default_train_block(class_name)

    source = writer.render(class_src, train_src)
    _check_generated(source, class_name)
    spec = ModelSpec(
        class_name=class_name,
        source=source,
        has_train_fn=train_fn is not None,
        imports=writer.import_lines() + ([] if train_fn is not None else [DEFAULT_TRAIN_IMPORT]),
        helpers=list(writer.constants) + [name for name, _ in writer.helpers],
        input_shape=tuple(int(d) for d in input_shape) if input_shape is not None else None,
    )
    preflight(spec, spec.input_shape)
    log.info("captured %s: %s parameters", class_name, spec.param_count)
    return spec


def component_source(cls: type, namespace: Mapping[str, Any] | None = None, cell_source: str | None = None) -> str:
    """A self-contained module text for a class from the notebook (e.g. a user's NVFlare Executor)."""
    if not isinstance(cls, type):
        raise CaptureError(f"expected a class, got {type(cls).__name__}")
    writer = _Writer(reserved={cls.__name__}, cell_source=cell_source)
    writer.bound[cls.__name__] = cls
    src = _class_source(cls, namespace, cell_source)
    ns = namespace if namespace is not None else _namespace_of(cls)
    writer.require(src, ns, cls.__name__, _future_annotations(cls))
    source = writer.render(src, "")
    _check_generated(source, cls.__name__)
    return source


def preflight(spec_or_cls: ModelSpec | type, input_shape: tuple[int, ...] | list[int] | None = None) -> ModelSpec:
    """Build the model from the generated source alone; count parameters; optionally run one forward pass.

    Passing a class captures it first (``capture`` calls this with the spec it made). The spec's
    ``param_count``, ``size_bytes`` and ``output_shape`` are filled in and the spec is returned.
    """
    if not isinstance(spec_or_cls, ModelSpec):
        return capture(spec_or_cls, input_shape=input_shape)
    spec = spec_or_cls
    import torch

    try:
        module = _exec_source(spec.source, spec.class_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of the user's code
        raise PreflightError(
            f"model_def.py for {spec.class_name} fails to import: {_one_line(exc)}: "
            "fix the cell so the class is defined by its own imports and helpers"
        ) from None
    model_cls = getattr(module, spec.class_name, None)
    if model_cls is None:
        raise PreflightError(f"model_def.py does not define {spec.class_name}: re-run the %%fl_model cell")
    if spec.has_train_fn and not callable(getattr(module, TRAIN_FN_NAME, None)):
        raise PreflightError(f"model_def.py defines no callable {TRAIN_FN_NAME}: define def {TRAIN_FN_NAME}(payload)")
    try:
        model = model_cls()
    except TypeError as exc:
        raise PreflightError(
            f"{spec.class_name}() failed: {_one_line(exc)}: FL sites build the model as {spec.class_name}(), "
            "so give every __init__ argument a default"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(
            f"{spec.class_name}() failed: {_one_line(exc)}: fix the class's __init__ so it builds without arguments"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise PreflightError(f"{spec.class_name}() is not a torch.nn.Module: subclass nn.Module")
    tensors = list(model.parameters()) + list(model.buffers())
    spec.param_count = sum(p.numel() for p in model.parameters())
    spec.size_bytes = sum(t.numel() * t.element_size() for t in tensors)
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        spec.input_shape = shape
        spec.output_shape = _forward_once(model, spec.class_name, shape)
    return spec


# -- the generated file ---------------------------------------------------------------------------


class _Writer:
    """Collects what model_def.py needs: imports, constants and helpers in dependency order."""

    def __init__(self, reserved: set[str], cell_source: str | None) -> None:
        self.reserved = set(reserved)
        self.cell_source = cell_source
        self.futures: set[str] = set()
        self.imports: dict[str, Any] = {}  # import line -> module/object (dedup)
        self.constants: dict[str, str] = {}  # name -> "NAME = repr"
        self.helpers: list[tuple[str, str]] = []  # (name, source) in dependency order
        self.bound: dict[str, Any] = {}  # name in model_def -> the object it stands for
        self._visiting: set[int] = set()
        self._done: set[int] = set()

    # -- resolving names --------------------------------------------------------------
    def require(self, source: str, namespace: Mapping[str, Any], user: str, future_annotations: bool) -> None:
        """Resolve every free name of ``source`` (a def/class/assignment) from ``namespace``."""
        if future_annotations:
            self.futures.add("from __future__ import annotations")
        names, soft, attribute_chains = _free_names(source)
        for name in names:
            self._resolve(name, namespace, user, soft=name in soft and future_annotations, chains=attribute_chains)

    def _resolve(
        self, name: str, namespace: Mapping[str, Any], user: str, *, soft: bool, chains: dict[str, set[str]]
    ) -> None:
        if name.startswith("__") and name.endswith("__"):
            return  # module dunders (__name__, __file__): model_def has its own
        if name in namespace:
            value = namespace[name]
        elif name in _IPYTHON_BUILTINS:
            if soft:
                return
            raise CaptureError(
                f"{name}() used by {user} is an IPython built-in that does not exist on the FL sites: "
                "remove it from the model code"
            )
        elif hasattr(builtins, name):
            return
        else:
            if soft:
                return
            raise CaptureError(
                f"name {name!r} used by {user} is not defined in the notebook: define or import it in the cell"
            )
        if name in self.bound:
            if self.bound[name] is value or (_is_constant(value) and self.bound[name] == value):
                return
            if name in self.reserved:
                raise CaptureError(
                    f"{user} uses the name {name!r}, which model_def.py needs for the model or fl_train_model: "
                    "rename it"
                )
            raise CaptureError(f"name {name!r} means two different things to the captured code: rename one of them")
        try:
            self._write(name, value, namespace, user, chains)
        except CaptureError:
            if soft:
                return
            raise

    def _write(
        self, name: str, value: Any, namespace: Mapping[str, Any], user: str, chains: dict[str, set[str]]
    ) -> None:
        self.bound[name] = value
        if isinstance(value, types.ModuleType):
            self._write_module(name, value, user, chains.get(name, set()))
            return
        if _is_constant(value):
            self.constants[name] = f"{name} = {value!r}"
            return
        if _defined_in_notebook(value, namespace):
            self._write_helper(name, value, namespace, user)
            return
        line = _import_line_for(name, value)
        if line is not None:
            self.imports[line] = value
            return
        raise CaptureError(_unwritable_message(name, value, user))

    def _write_module(self, name: str, module: types.ModuleType, user: str, chain: set[str]) -> None:
        mod_name = module.__name__
        if mod_name in _NOTEBOOK_MODULES or sys.modules.get(mod_name) is not module:
            raise CaptureError(
                f"{name!r} used by {user} is a module that cannot be imported by name ({mod_name}): "
                "import it with a plain import statement"
            )
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
        func = _unwrapped(value)  # a decorated def: its source carries the decorators
        real_name = getattr(func, "__name__", name)
        if key in self._visiting or key in self._done:
            if real_name != name and key in self._done:
                self.constants.pop(name, None)
                self.helpers.append((name, f"{name} = {real_name}\n"))
            return
        if isinstance(value, type):
            source = _class_source(value, namespace, self.cell_source)
            inner_ns = _namespace_of(value, namespace)
            future = _future_annotations(value)
        elif isinstance(func, types.FunctionType):
            source = _function_source(func, name, namespace, self.cell_source)
            inner_ns = func.__globals__
            future = _future_annotations(func)
        else:
            raise CaptureError(_unwritable_message(name, value, user))
        if real_name != name and real_name != "<lambda>":
            if real_name in self.bound and self.bound[real_name] is not value:
                raise CaptureError(
                    f"{name!r} is another name for {real_name!r}, and {real_name!r} means something else here: "
                    "rename one of them"
                )
            self.bound[real_name] = value
        self._visiting.add(key)
        try:
            self.require(source, inner_ns, real_name if real_name != "<lambda>" else name, future)
        finally:
            self._visiting.discard(key)
        self._done.add(key)
        self.helpers.append((real_name if real_name != "<lambda>" else name, source))
        if real_name != name and real_name != "<lambda>":
            self.helpers.append((name, f"{name} = {real_name}\n"))

    # -- rendering ------------------------------------------------------------------------
    def import_lines(self) -> list[str]:
        return sorted(self.imports, key=lambda line: (line.startswith("from "), line.lower()))

    def render(self, main_source: str, train_source: str) -> str:
        what = f"the model class and {TRAIN_FN_NAME}" if train_source else "the class"
        blocks = []
        if self.futures or self.imports:
            spacer = [""] if self.futures and self.imports else []
            blocks.append("\n".join([*sorted(self.futures), *spacer, *self.import_lines()]) + "\n")
        if self.constants:
            blocks.append("\n".join(self.constants.values()) + "\n")
        blocks.extend(src.rstrip("\n") + "\n" for _, src in self.helpers)
        blocks.append(main_source.rstrip("\n") + "\n")
        if train_source:
            blocks.append(train_source.rstrip("\n") + "\n")
        return _join(
            f"# model_def.py: {what} with the imports and helpers they need, generated from the notebook.\n", blocks
        )


def _join(header: str, blocks: list[str]) -> str:
    """Blocks separated by two blank lines, as PEP 8 spaces top-level definitions."""
    return header + "\n" + "\n\n".join(blocks)


# -- free names -------------------------------------------------------------------------------------


def _free_names(source: str) -> tuple[list[str], set[str], dict[str, set[str]]]:
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


# -- what a value becomes ---------------------------------------------------------------------------


def _is_constant(value: Any) -> bool:
    """int, float, str, bool, None, bytes and tuples/lists/dicts/sets of them, if repr round-trips."""
    if not _plain(value):
        return False
    try:
        back = ast.literal_eval(repr(value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(back) is type(value) and back == value


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if value is None or type(value) in (bool, int, float, complex, str, bytes):
        return True
    if type(value) in (tuple, list, set, frozenset):
        return type(value) is not frozenset and all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _unwrapped(value: Any) -> Any:
    """The function under decorators that keep ``__wrapped__`` (functools.wraps, lru_cache)."""
    if isinstance(value, type) or not hasattr(value, "__wrapped__"):
        return value
    try:
        return inspect.unwrap(value)
    except ValueError:  # a cycle of __wrapped__
        return value


def _defined_in_notebook(value: Any, namespace: Mapping[str, Any]) -> bool:
    value = _unwrapped(value)
    if not isinstance(value, (type, types.FunctionType)):
        return False
    module = getattr(value, "__module__", None)
    return module in _NOTEBOOK_MODULES or module == namespace.get("__name__")


def _import_line_for(name: str, value: Any) -> str | None:
    """``from mod import attr [as name]`` if ``value`` is reachable by name from an importable module."""
    module_name = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(module_name, str) and isinstance(qualname, str) and module_name not in _NOTEBOOK_MODULES:
        if "." not in qualname and "<" not in qualname and _reachable(module_name, qualname, value):
            return _from_line(module_name, qualname, name)
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) or not isinstance(
        value, (int, float, str, bytes, tuple, list, dict, set)
    ):
        found = _search_modules(name, value)
        if found is not None:
            return _from_line(found[0], found[1], name)
    return None


def _from_line(module_name: str, attr: str, name: str) -> str:
    return f"from {module_name} import {attr}" + ("" if attr == name else f" as {name}")


def _reachable(module_name: str, attr: str, value: Any) -> bool:
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - not importable means not reachable
            return False
    return getattr(module, attr, None) is value


def _search_modules(name: str, value: Any) -> tuple[str, str] | None:
    """A public, loaded module holding ``value`` as an attribute (shortest module name wins)."""
    best: tuple[str, str] | None = None
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name in _NOTEBOOK_MODULES or any(p.startswith("_") for p in module_name.split(".")):
            continue
        for attr in (name, getattr(value, "__name__", None)):
            if not isinstance(attr, str) or attr.startswith("_"):
                continue
            try:
                if getattr(module, attr, None) is value and (best is None or len(module_name) < len(best[0])):
                    best = (module_name, attr)
            except Exception:  # noqa: BLE001 - lazy modules may raise on getattr
                continue
    return best


def _unwritable_message(name: str, value: Any, user: str) -> str:
    kind = _describe(value)
    type_name = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return (
        f"`{name}` used by {user} is {kind} ({type_name}) and cannot be written into model_def.py: "
        f"create it inside the class or {TRAIN_FN_NAME}"
    )


def _describe(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "an open file"
    if isinstance(value, types.LambdaType) and getattr(value, "__name__", "") == "<lambda>":
        return "a lambda whose source cannot be found"
    if isinstance(value, types.FunctionType):
        return "a function whose source cannot be found"
    if isinstance(value, type):
        return "a class that cannot be imported by name"
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return "a tensor"
        if isinstance(value, torch.nn.Module):
            return "a model instance"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "an object"


# -- finding source -----------------------------------------------------------------------------------


def _namespace_of(obj: Any, fallback: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The globals a class or function was defined in (``fallback`` for a class without methods)."""
    if isinstance(obj, types.FunctionType):
        return obj.__globals__
    for fn in _methods(obj):
        return fn.__globals__
    if fallback is not None:
        return fallback
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is not None:
        return vars(module)
    return {}


def _methods(cls: type) -> Iterator[types.FunctionType]:
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if isinstance(member, types.FunctionType):
            member = inspect.unwrap(member)
            if isinstance(member, types.FunctionType) and member.__qualname__.startswith(cls.__qualname__ + "."):
                yield member


def _future_annotations(obj: Any) -> bool:
    functions = [obj] if isinstance(obj, types.FunctionType) else list(_methods(obj)) if isinstance(obj, type) else []
    return any(fn.__code__.co_flags & _FUTURE_ANNOTATIONS for fn in functions)


def _class_source(cls: type, namespace: Mapping[str, Any] | None, cell_source: str | None) -> str:
    """The class's source: from its methods' file/cell, then ``inspect``, then the recorded cells."""
    for fn in _methods(cls):
        lines = linecache.getlines(fn.__code__.co_filename)
        if not lines:
            continue
        source = _find_def("".join(lines), cls.__name__, ast.ClassDef, fn.__code__.co_firstlineno)
        if source is not None:
            return source
    if getattr(cls, "__module__", None) not in _NOTEBOOK_MODULES:
        try:
            return textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            pass
    for text in _recorded_cells(cls, namespace, cell_source):
        source = _find_def(text, cls.__name__, ast.ClassDef)
        if source is not None:
            return source
    raise CaptureError(
        f"cannot find the source of class {cls.__name__}: define it in a notebook cell or a .py file, "
        "then run %%fl_model again"
    )


def _function_source(
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
            source = _find_def(text, fn.__name__, (ast.FunctionDef, ast.AsyncFunctionDef))
            if source is not None:
                return source
        else:
            source = _find_lambda(text, name)
            if source is not None:
                return source
    if not is_lambda:
        for text in _recorded_cells(fn, namespace, cell_source):
            source = _find_def(text, fn.__name__, (ast.FunctionDef, ast.AsyncFunctionDef))
            if source is not None:
                return source
    what = "a lambda whose source cannot be found" if is_lambda else "a function whose source cannot be found"
    raise CaptureError(
        f"`{name}` is {what}: define it with def in a notebook cell or a .py file"
        + (f", or create it inside the class or {TRAIN_FN_NAME}" if is_lambda else "")
    )


def _find_def(text: str, name: str, kinds: Any, line: int | None = None) -> str | None:
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


def _find_lambda(text: str, name: str) -> str | None:
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


def _recorded_cells(obj: Any, namespace: Mapping[str, Any] | None, cell_source: str | None) -> Iterator[str]:
    """Cell texts that may hold ``obj``'s definition, newest first."""
    if cell_source:
        yield cell_source
    ns = namespace if namespace is not None else _namespace_of(obj)
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


# -- checks and execution -------------------------------------------------------------------------------


def _check_model_class(model_cls: Any) -> None:
    if not isinstance(model_cls, type):
        raise CaptureError(
            f"capture() needs the model class, got {type(model_cls).__name__}: pass the class (Net), not an instance"
        )
    import torch

    if not issubclass(model_cls, torch.nn.Module):
        raise CaptureError(f"{model_cls.__name__} is not a torch.nn.Module subclass: derive it from nn.Module")


def _check_generated(source: str, class_name: str) -> None:
    try:
        tree = ast.parse(compile(source, "model_def.py", "exec", ast.PyCF_ONLY_AST))
    except SyntaxError as exc:
        raise CaptureError(
            f"the generated model_def.py does not compile (line {exc.lineno}: {exc.msg}): "
            "check the class and fl_train_model in the cell"
        ) from None
    if not any(isinstance(n, ast.ClassDef) and n.name == class_name for n in tree.body):
        raise CaptureError(f"the generated model_def.py lacks class {class_name}: re-run the cell")


def _exec_source(source: str, class_name: str) -> types.ModuleType:
    """Run model_def.py text in a fresh module; the default loop's import (job-side only) is left out."""
    default = default_train_block(class_name)
    code_text = source[: -len(default)] if source.endswith(default) else source
    filename = f"<model_def {class_name}>"
    linecache.cache[filename] = (len(code_text), None, code_text.splitlines(keepends=True), filename)
    module = types.ModuleType("model_def")
    module.__file__ = filename
    previous = sys.modules.get("model_def")
    sys.modules["model_def"] = module  # dataclasses and pickling look the module up while it is built
    try:
        exec(compile(code_text, filename, "exec"), module.__dict__)  # noqa: S102 - the user's own code
    finally:
        if previous is not None:
            sys.modules["model_def"] = previous
        else:
            sys.modules.pop("model_def", None)
    return module


def _forward_once(model: Any, class_name: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    import torch

    try:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's forward
        raise PreflightError(
            f"{class_name} forward pass on input shape {shape} failed: {_one_line(exc)}: "
            "check the layer sizes or give the right --input-shape"
        ) from None
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
