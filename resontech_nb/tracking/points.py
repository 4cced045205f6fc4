"""What a job's run holds: round records as ``(key, value, step)`` points (step = round), the job's
settings as flat parameters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..records.rounds import RoundRecord
from .base import Point


def round_points(records: Iterable[RoundRecord]) -> list[Point]:
    """Every round's global and per-site metrics and validation, duration and participation.

    Keys: ``global/loss``, ``global/train/<m>``, ``global/val/<m>``, ``round/duration_s``,
    ``round/participants``, ``site/<site>/took_part`` (1 or 0), ``site/<site>/samples``,
    ``site/<site>/train/<m>``, ``site/<site>/val/<m>``, and ``site/<site>/log/<name>`` for what
    ``fl_train_model`` logged through ``payload["log"]`` (at its own step).
    """
    points: list[Point] = []
    for record in records:
        step = record.round
        if record.global_loss is not None:
            points.append(("global/loss", record.global_loss, step))
        points += [(f"global/train/{k}", v, step) for k, v in sorted(record.metrics.items())]
        points += [(f"global/val/{k}", v, step) for k, v in sorted(record.validation.items())]
        if record.duration_s is not None:
            points.append(("round/duration_s", float(record.duration_s), step))
        points.append(("round/participants", float(len(record.participants)), step))
        for site, client in sorted(record.clients.items()):
            prefix = f"site/{site}"
            points.append((f"{prefix}/took_part", 1.0 if client.took_part else 0.0, step))
            if client.took_part:
                points.append((f"{prefix}/samples", float(client.samples), step))
            points += [(f"{prefix}/train/{k}", v, step) for k, v in sorted(client.metrics.items())]
            points += [(f"{prefix}/val/{k}", v, step) for k, v in sorted(client.validation.items())]
            points += [(f"{prefix}/log/{name}", value, at) for name, value, at in client.steps]
    return points


def flat_params(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"training": {"batch_size": 8}, "target": "local"}`` -> ``{"training.batch_size": 8, "target": "local"}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in flat_params(value).items()})
        else:
            out[key] = value
    return out
