"""``capture``: a model class (and its FL functions) from a notebook, as a self-contained ``model_def.py``.

``capture(Net)`` writes the class source plus exactly what it needs (see ``writer``), then ``preflight``
checks that the text alone rebuilds the notebook's model. ``component_source`` does the same for any
class (a user's NVFlare Executor or persistor).
"""

from __future__ import annotations

import ast
import inspect
import logging
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CaptureError, CaptureWarning, PreflightError
from .checks import check_spec
from .sources import class_source, function_source, future_annotations, namespace_of
from .spec import (
    DEFAULT_TRAIN_EVAL_IMPORT,
    DEFAULT_TRAIN_IMPORT,
    EVAL_FN_NAME,
    TRAIN_FN_NAME,
    ModelSpec,
    default_train_block,
)
from .writer import Writer

log = logging.getLogger(__name__)


def capture(
    model_cls: type,
    train_fn: Callable[..., Any] | None = None,
    eval_fn: Callable[..., Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
    cell_source: str | None = None,
) -> ModelSpec:
    """Capture ``model_cls`` (``train_fn`` as ``fl_train_model``, ``eval_fn`` as ``fl_evaluate_model``); preflight.

    ``namespace`` is where free names are looked up (default: where the class was defined, i.e. the
    notebook's namespace for a class from a cell). ``cell_source`` helps find the class's source when
    Python cannot (a class without methods defined in a notebook cell).
    """
    check_model_class(model_cls)
    class_name = model_cls.__name__
    writer = Writer(reserved={class_name, TRAIN_FN_NAME, EVAL_FN_NAME}, cell_source=cell_source)
    writer.bound[class_name] = model_cls
    class_src = class_source(model_cls, namespace, cell_source)
    class_ns = namespace if namespace is not None else namespace_of(model_cls)
    writer.require(class_src, class_ns, class_name, future_annotations(model_cls), model_cls)

    tail = []
    if train_fn is not None:
        tail.append(_function_block(writer, train_fn, TRAIN_FN_NAME, namespace, cell_source))
    else:
        tail.append(default_train_block(class_name, with_default_eval=eval_fn is None))
    if eval_fn is not None:
        tail.append(_function_block(writer, eval_fn, EVAL_FN_NAME, namespace, cell_source))

    what = "the model class and its FL functions"
    source = writer.render(class_src, tail, what)
    check_generated(source, class_name)
    default_imports = []
    if train_fn is None:
        default_imports = [DEFAULT_TRAIN_IMPORT if eval_fn is not None else DEFAULT_TRAIN_EVAL_IMPORT]
    spec = ModelSpec(
        class_name=class_name,
        source=source,
        has_train_fn=train_fn is not None,
        has_eval_fn=eval_fn is not None,
        imports=writer.import_lines() + default_imports,
        helpers=writer.helper_names(),
        input_shape=tuple(int(d) for d in input_shape) if input_shape is not None else None,
        warnings=_device_warnings(writer, train_fn, eval_fn),
        model_cls=model_cls,
    )
    for text in spec.warnings:
        warnings.warn(text, CaptureWarning, stacklevel=2)
    check_spec(spec, spec.input_shape)
    log.info("captured %s: %s parameters", class_name, spec.param_count)
    return spec


def preflight(spec_or_cls: ModelSpec | type, input_shape: tuple[int, ...] | list[int] | None = None) -> ModelSpec:
    """Build the model from the generated source alone in a clean process; compare it with the notebook's.

    Passing a class captures it first (which runs this check). Runs one forward pass when ``input_shape`` is
    given; the spec's ``param_count``, ``size_bytes`` and ``output_shape`` are filled in and it is returned.
    """
    if not isinstance(spec_or_cls, ModelSpec):
        return capture(spec_or_cls, input_shape=input_shape)
    return check_spec(spec_or_cls, input_shape)


def component_source(cls: type, namespace: Mapping[str, Any] | None = None, cell_source: str | None = None) -> str:
    """A self-contained module text for a class from the notebook (e.g. a user's NVFlare Executor)."""
    if not isinstance(cls, type):
        raise CaptureError(f"expected a class, got {type(cls).__name__}")
    writer = Writer(reserved={cls.__name__}, cell_source=cell_source)
    writer.bound[cls.__name__] = cls
    src = class_source(cls, namespace, cell_source)
    ns = namespace if namespace is not None else namespace_of(cls)
    writer.require(src, ns, cls.__name__, future_annotations(cls), cls)
    source = writer.render(src, [], "the class")
    check_generated(source, cls.__name__)
    return source


def _function_block(
    writer: Writer, fn: Any, public_name: str, namespace: Mapping[str, Any] | None, cell_source: str | None
) -> str:
    """``fn``'s source (with its needs resolved), aliased to ``public_name`` when it has another name."""
    if not isinstance(fn, types.FunctionType):
        raise CaptureError(
            f"the function for {public_name} must be defined with def, got {type(fn).__name__}: "
            f"define def {public_name}(payload): ... in the cell"
        )
    if fn.__name__ != public_name:
        if fn.__name__ in writer.bound and writer.bound[fn.__name__] is not fn:
            raise CaptureError(f"{fn.__name__!r} is used for two different things: rename the function")
        writer.reserved.add(fn.__name__)
    writer.bound[fn.__name__] = fn
    src = function_source(fn, fn.__name__, namespace, cell_source)
    fn_ns = namespace if namespace is not None else fn.__globals__
    writer.require(src, fn_ns, public_name, future_annotations(fn), fn)
    if fn.__name__ != public_name:
        src = src.rstrip("\n") + f"\n\n\n{public_name} = {fn.__name__}\n"
    return src


def _device_warnings(writer: Writer, *functions: Any) -> list[str]:
    """A train/eval function reading a global ``device`` pins every site to the notebook's device."""
    found = []
    for fn, public_name in zip(functions, (TRAIN_FN_NAME, EVAL_FN_NAME), strict=True):
        if fn is None:
            continue
        value = writer.global_reads.get(public_name, {}).get("device")
        if isinstance(value, str) or type(value).__name__ == "device":
            found.append(
                f"{public_name} reads the global `device` ({str(value)!r}), which every site then uses: "
                'use payload["device"] instead, so a site with a GPU uses it'
            )
    return found


def check_model_class(model_cls: Any) -> None:
    """A class deriving from nn.Module that FL sites can build as ``Cls()``."""
    if not isinstance(model_cls, type):
        raise CaptureError(
            f"capture() needs the model class, got {type(model_cls).__name__}: pass the class (Net), not an instance"
        )
    import torch

    if not issubclass(model_cls, torch.nn.Module):
        raise CaptureError(f"{model_cls.__name__} is not a torch.nn.Module subclass: derive it from nn.Module")
    try:
        signature = inspect.signature(model_cls)
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise PreflightError(
            f"{model_cls.__name__}.__init__ needs arguments ({', '.join(required)}): FL sites build the model as "
            f"{model_cls.__name__}(), so give every __init__ argument a default"
        )


def check_generated(source: str, class_name: str) -> None:
    try:
        tree = ast.parse(compile(source, "model_def.py", "exec", ast.PyCF_ONLY_AST))
    except SyntaxError as exc:
        raise CaptureError(
            f"the generated model_def.py does not compile (line {exc.lineno}: {exc.msg}): "
            "check the class and fl_train_model in the cell"
        ) from None
    if not any(isinstance(n, ast.ClassDef) and n.name == class_name for n in tree.body):
        raise CaptureError(f"the generated model_def.py lacks class {class_name}: re-run the cell")
