"""Tracking: a job's run logged where data scientists already look (TensorBoard, MLflow).

A sink is one module over ``base.Sink`` plus one line in ``REGISTRY``. ``FederationConfig.tracking`` names
them as ``scheme:location``, several separated by ``;`` (``tensorboard:runs;mlflow:http://127.0.0.1:5000``).
"""

from __future__ import annotations

from .base import Sink
from .mlflow_sink import MlflowSink
from .tensorboard_sink import TensorBoardSink

REGISTRY: dict[str, type[Sink]] = {
    TensorBoardSink.scheme: TensorBoardSink,
    MlflowSink.scheme: MlflowSink,
}

__all__ = ["REGISTRY", "Sink", "parse_sinks", "tracking_problem"]


def _entries(value: str) -> list[tuple[str, str]]:
    out = []
    for entry in (part.strip() for part in value.split(";")):
        if entry:
            scheme, _, where = entry.partition(":")
            out.append((scheme.strip().lower(), where.strip()))
    return out


def tracking_problem(value: str) -> str:
    """What is wrong with a ``tracking`` setting as written ("" when usable); nothing is contacted."""
    for scheme, where in _entries(value):
        if scheme not in REGISTRY:
            return (
                f"tracking {scheme}:{where} has an unknown scheme {scheme!r}: use "
                + " or ".join(f"'{name}:...'" for name in REGISTRY)
                + ", several separated by ';'"
            )
        problem = REGISTRY[scheme].problem(where)
        if problem:
            return problem
    return ""


def parse_sinks(value: str) -> list[Sink]:
    """The sinks a ``tracking`` setting names (checked with ``tracking_problem`` first)."""
    return [REGISTRY[scheme](where) for scheme, where in _entries(value)]
