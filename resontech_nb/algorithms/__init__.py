"""The federated algorithms one setting chooses: ``FederationConfig.algorithm``.

Each is one module and one line of ``REGISTRY``; see ``base.py`` for what an algorithm can change.
"""

from __future__ import annotations

from typing import Any

from ..fields import Setting
from .base import Algorithm
from .fedavg import FedAvg
from .fedopt import FedOpt
from .fedprox import FedProx
from .scaffold import Scaffold

REGISTRY: dict[str, type[Algorithm]] = {
    FedAvg.name: FedAvg,
    FedProx.name: FedProx,
    FedOpt.name: FedOpt,
    Scaffold.name: Scaffold,
}
DEFAULT = FedAvg.name


def algorithm_for(federation: Any) -> Algorithm:
    """The algorithm ``federation.algorithm`` names, for that configuration."""
    return REGISTRY[federation.algorithm](federation)


def algorithm_settings() -> dict[str, Setting]:
    """Every algorithm's own settings, in registry order (fields of ``FederationConfig``)."""
    return {name: setting for cls in REGISTRY.values() for name, setting in cls.settings.items()}


__all__ = ["DEFAULT", "REGISTRY", "Algorithm", "algorithm_for", "algorithm_settings"]
