"""``ModelSpec``: the text of a job's ``model_def.py`` and what preflight learned about the model."""

from __future__ import annotations

import linecache
import sys
import types
from dataclasses import dataclass, field
from typing import Any

TRAIN_FN_NAME = "fl_train_model"
EVAL_FN_NAME = "fl_evaluate_model"
DEFAULT_TRAIN_IMPORT = "from rt_default_train import default_train_model"
DEFAULT_TRAIN_EVAL_IMPORT = "from rt_default_train import default_evaluate_model, default_train_model"


def default_train_block(class_name: str, with_default_eval: bool = False) -> str:
    """The ``fl_train_model`` written when the cell defines none (``rt_default_train`` ships in custom/).

    ``with_default_eval``: ``fl_evaluate_model`` is the default one too (no train and no eval function
    captured: the default loop validates its own model).
    """
    block = f"{DEFAULT_TRAIN_EVAL_IMPORT if with_default_eval else DEFAULT_TRAIN_IMPORT}\n\n\n"
    block += f"def {TRAIN_FN_NAME}(payload):\n    return default_train_model({class_name}, payload)\n"
    if with_default_eval:
        block += f"\n\ndef {EVAL_FN_NAME}(payload):\n    return default_evaluate_model({class_name}, payload)\n"
    return block


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
    has_eval_fn: bool = False
    warnings: list[str] = field(default_factory=list)
    # The notebook's own class, which preflight compares the generated source against (not part of the spec's value).
    model_cls: type | None = field(default=None, repr=False, compare=False)

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
        lines.append(f"  {TRAIN_FN_NAME}: {'from the cell' if self.has_train_fn else 'default training loop'}")
        if self.has_eval_fn:
            evaluation = "from the cell"
        elif self.has_train_fn:
            evaluation = "none (sites skip validation)"
        else:
            evaluation = "default evaluation"
        lines.append(f"  {EVAL_FN_NAME}: {evaluation}")
        lines.append(f"  imports: {', '.join(self.imports) if self.imports else '(none)'}")
        if self.helpers:
            lines.append(f"  helpers: {', '.join(self.helpers)}")
        lines.extend(f"  warning: {text}" for text in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    def load_module(self) -> types.ModuleType:
        """Execute ``source`` in a fresh module (the default training loop's imports are left out)."""
        return exec_source(self.source, self.class_name)

    def load_class(self) -> type:
        """The model class built from ``source`` alone, e.g. ``net = spec.load_class()()``."""
        return getattr(self.load_module(), self.class_name)


def exec_source(source: str, class_name: str) -> types.ModuleType:
    """Run model_def.py text in a fresh module; the default loop's imports (job-side only) are left out."""
    code_text = source
    for default in (default_train_block(class_name, True), default_train_block(class_name)):
        if default in code_text:
            code_text = code_text.replace(default, "")
            break
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
