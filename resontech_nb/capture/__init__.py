"""Model capture: a model class (and its FL functions) from a notebook, as a self-contained ``model_def.py``.

``capture(Net)`` writes the class source plus exactly what it needs: the imports behind the names it
uses (``nn`` -> ``import torch.nn as nn``), helper functions and classes from other cells or from ``.py``
files next to the notebook (with their own needs, recursively), constants and values that can be rebuilt
as source (``HIDDEN = 16``, ``functools.partial(...)``, a dataclass config, ``args`` from argparse, a table of
lambdas), TorchScript functions with their ``@torch.jit.script`` line. Names IPython puts into the notebook
(``open``, ``exit``) are the plain built-ins; those that exist only there (``display``, ``Out``) are refused.
A name that cannot be written down or is not defined fails here, naming the fix, instead of on an FL site.
``preflight`` then builds the class from the generated text alone, in a clean process, and compares it with
the notebook's own.

Modules: ``core`` (capture, component_source), ``writer`` (resolving names, writing the file), ``names``
(free and closure names), ``shell_names`` (what IPython/ipykernel put into the notebook: plain built-ins
or refused), ``values`` (what a value becomes), ``roundtrip`` (a written value must rebuild the live one),
``refusals`` (why a name cannot be written, naming the user's own name and one fix), ``origins`` (notebook,
local file or installed), ``sources`` (finding source text, a lambda's included), ``torchscript`` (the def
behind a ScriptFunction), ``checks`` + ``clean_process`` + ``fresh_import`` (preflight), ``spec`` (ModelSpec).
"""

from __future__ import annotations

from .clean_process import warm_up
from .core import capture, component_source, preflight
from .spec import (
    DEFAULT_TRAIN_EVAL_IMPORT,
    DEFAULT_TRAIN_IMPORT,
    EVAL_FN_NAME,
    TRAIN_FN_NAME,
    ModelSpec,
    default_train_block,
)

__all__ = [
    "DEFAULT_TRAIN_EVAL_IMPORT",
    "DEFAULT_TRAIN_IMPORT",
    "EVAL_FN_NAME",
    "TRAIN_FN_NAME",
    "ModelSpec",
    "capture",
    "component_source",
    "default_train_block",
    "preflight",
    "warm_up",
]
