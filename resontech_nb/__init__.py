"""resontech_nb: train a PyTorch model from a notebook cell federated with NVIDIA FLARE.

``%load_ext resontech_nb`` registers the magics; the Python API below is what they wrap.
"""

from __future__ import annotations

import sys

# pip refuses an older Python (requires-python); this names the fix for a tree copied onto one.
if sys.version_info < (3, 10):  # noqa: UP036
    raise ImportError(f"resontech_nb needs Python 3.10 or newer, this is {sys.version.split()[0]}: use Python 3.10+")

from typing import Any  # noqa: E402

# Imported eagerly (it is light): a lazy `capture` would be shadowed by the submodule of that name.
from .capture import ModelSpec, capture  # noqa: E402
from .config.settings import FederationConfig, ResonTechConfig, TrainingConfig  # noqa: E402
from .errors import ResonTechError  # noqa: E402

__version__ = "0.1.0"  # the one place of the version: pyproject.toml reads it, `resontech-nb --version` shows it
# Where the code lives: the one authoritative URL. The README's links and badges, pyproject.toml, binder/ and the
# notebooks' first cell copy it; a fork runs scripts/set_repository_url.sh, tests/test_repository_url.py checks.
REPOSITORY_URL = "https://github.com/resontech/resontech_nb"

_LAZY = {
    "build_job": ("resontech_nb.api", "build_job"),
    "submit": ("resontech_nb.api", "submit"),
    "attach": ("resontech_nb.api", "attach"),
    "Job": ("resontech_nb.job.handle", "Job"),
    "RoundRecord": ("resontech_nb.records.rounds", "RoundRecord"),
    "make_shard": ("resontech_nb.data.making", "make_shard"),
    "make_shard_from_folder": ("resontech_nb.data.making", "make_shard_from_folder"),
    "validate_shards": ("resontech_nb.data.shards", "validate_shards"),
    "make_synthetic_shards": ("resontech_nb.data.synthetic", "make_synthetic_shards"),
    "split_shards": ("resontech_nb.data.splitting", "split_shards"),
    "data_summary": ("resontech_nb.api", "data_summary"),
    "show_dashboard": ("resontech_nb.dashboard", "show_dashboard"),
    "list_jobs": ("resontech_nb.api", "list_jobs"),
    "compare": ("resontech_nb.api", "compare"),
    "PocDeployment": ("resontech_nb.targets.nvflare.poc", "PocDeployment"),
    "warm_up": ("resontech_nb.warming", "warm_up"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import resontech_nb` stays fast and torch/nvflare load only when used.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value  # found once; help() and completion see the real object from then on
        return value
    raise AttributeError(f"module 'resontech_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Every public name, the lazy ones included, so that ``dir(rt)`` and IPython's completion list the API."""
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext resontech_nb``; also starts the clean process for preflight, so that it has imported torch
    by the time the first ``%%fl_model`` cell needs it, and on the local target a warm simulator process for the
    first job (``warm_up``)."""
    from .notebook.magics import register
    from .notebook.widgets_support import prepare_widgets
    from .warming import warm_up

    prepare_widgets()  # ipywidgets >= 7.6; Colab's widget manager with ipywidgets 8
    magics = register(ipython)
    warm_up(magics.target)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import unregister

    unregister(ipython)


__all__ = [
    "ModelSpec",
    "capture",
    "FederationConfig",
    "ResonTechConfig",
    "ResonTechError",
    "TrainingConfig",
    *_LAZY,
]
