"""Target registry: name -> ``module:Class``. A fourth target is one new module and one line here."""

from __future__ import annotations

import importlib

from ..config.settings import ResonTechConfig
from ..errors import ConfigError
from .base import BuiltJob, Target, check_job_id

TARGETS: dict[str, str] = {
    "local": "resontech_nb.targets.local.target:LocalTarget",
    "nvflare": "resontech_nb.targets.nvflare.target:NVFlareTarget",
    "resontech": "resontech_nb.targets.resontech.target:ResonTechTarget",
}


def target_class(name: str) -> type[Target]:
    """The class of the target called ``name``."""
    try:
        module_name, class_name = TARGETS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown target {name!r}; use one of: {', '.join(TARGETS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def get_target(name: str, config: ResonTechConfig | None = None) -> Target:
    """The target called ``name``, set up with ``config``."""
    return target_class(name)(config)


__all__ = ["TARGETS", "BuiltJob", "Target", "check_job_id", "get_target", "target_class"]
