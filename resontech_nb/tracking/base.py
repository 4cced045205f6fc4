"""What every tracking sink is: a place a job's run is logged to (TensorBoard, MLflow, ...).

A sink opens (or finds again) the job's one run and says which ``(key, step)`` points it already holds, so
that a tracker started again (a kernel restart, ``attach``) or a sink back after an outage logs only what is
missing. Logging happens on the notebook side from the round records, the same for every target.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ConfigError

Point = tuple[str, float, int]  # (key, value, step)
EXTRA = "pip install resontech_nb[tracking]"


@dataclass(frozen=True)
class RunInfo:
    """The job a run is for: its id (the run is found again by it), name (the experiment), parameters, tags."""

    job_id: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def require(module: str, scheme: str) -> Any:
    """Import ``module`` or fail naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"tracking {scheme}: needs the {module.split('.')[0]} package: {EXTRA} (or pip install "
            f"{module.split('.')[0]})"
        ) from None


class Sink(ABC):
    """One tracking destination, e.g. ``tensorboard:runs`` or ``mlflow:http://127.0.0.1:5000``."""

    scheme: ClassVar[str] = ""
    module: ClassVar[str] = ""  # the package it needs (checked when the setting is checked)

    def __init__(self, where: str) -> None:
        self.where = where

    @property
    def label(self) -> str:
        return f"{self.scheme}:{self.where}"

    @classmethod
    def problem(cls, where: str) -> str:
        """What is wrong with ``where`` as written ("" when it is usable); nothing is contacted."""
        return "" if where else f"tracking {cls.scheme}: needs a location after '{cls.scheme}:'"

    def check_reachable(self) -> None:
        """Raise ``ConfigError`` naming the location when it cannot be used now (before anything is submitted)."""
        require(self.module, self.scheme)

    @abstractmethod
    def open(self, run: RunInfo) -> set[tuple[str, int]]:
        """Start the job's run or find it again; return the ``(key, step)`` points it already holds."""

    @abstractmethod
    def log(self, points: list[Point]) -> None:
        """Log these points (none of which the run holds yet)."""

    @abstractmethod
    def set_tags(self, tags: dict[str, str]) -> None:
        """Set (or replace) the run's tags, e.g. the job's final status."""

    def log_model(self, name: str, state_dict: dict[str, Any]) -> None:  # noqa: B027 - optional for a sink
        """Keep a model's ``state_dict`` with the run (sinks that hold files do)."""

    def finish(self, status: str) -> None:  # noqa: B027 - optional for a sink
        """The job ended with ``status``: close the run."""

    def close(self) -> None:  # noqa: B027 - optional for a sink
        """Let go of files and connections."""
