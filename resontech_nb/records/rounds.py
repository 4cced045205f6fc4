"""Round records: the one stream every target produces and the dashboard consumes.

A job's server writes one JSON line per finished round (see ``jobcode/rt_recorder.py``);
targets turn those lines, whatever their transport, into ``RoundRecord`` objects.
Rounds are numbered from 0 as in NVFlare; displays show ``round + 1``.

Per client: training ``loss``, ``samples`` and every scalar ``metrics`` that ``fl_train_model``
returned; ``validation`` (the metrics of the global model this round produced, evaluated on
that client's data) with ``validation_samples``, or ``validation_error`` when that failed.
``steps`` holds what ``fl_train_model`` logged through ``payload["log"]`` as ``(name, value, step)``.
Per round: ``metrics`` and ``validation`` are the sample-weighted means over the clients.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

TOOK_PART = "ok"
FAILED = "failed"
ABSENT = "absent"
CLIENT_STATES = (TOOK_PART, FAILED, ABSENT)


def scalar_metrics(values: Mapping[str, Any] | None) -> dict[str, float]:
    """The plain-float scalars of a metrics mapping (non-numbers are dropped; NaN/inf are kept)."""
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            value = float(value)
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def weighted_mean(parts: Iterable[tuple[Mapping[str, float], int]]) -> dict[str, float]:
    """Sample-weighted mean of each metric over the parts that report it."""
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for metrics, samples in parts:
        if samples <= 0:
            continue
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * samples
            weights[key] = weights.get(key, 0) + samples
    return {key: sums[key] / weights[key] for key in sums}


def _steps(rows: Any) -> tuple[tuple[str, float, int], ...]:
    """``[[name, value, step], ...]`` as tuples; malformed rows are dropped."""
    out = []
    for row in rows or ():
        try:
            name, value, step = row
            out.append((str(name), float(value), int(step)))
        except (TypeError, ValueError):
            continue
    return tuple(out)


@dataclass(frozen=True)
class ClientRound:
    """What one client did in one round."""

    status: str  # "ok", "failed" or "absent"
    loss: float | None = None
    samples: int = 0
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    validation_samples: int = 0
    validation_error: str | None = None
    steps: tuple[tuple[str, float, int], ...] = ()  # what fl_train_model logged with payload["log"]

    @property
    def took_part(self) -> bool:
        return self.status == TOOK_PART

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientRound:
        metrics = scalar_metrics(data.get("metrics"))
        loss = data.get("loss", metrics.get("loss"))
        return cls(
            status=str(data.get("status", ABSENT)),
            loss=None if loss is None else float(loss),
            samples=int(data.get("samples") or 0),
            error=data.get("error"),
            metrics=metrics,
            validation=scalar_metrics(data.get("validation")),
            validation_samples=int(data.get("validation_samples") or 0),
            validation_error=data.get("validation_error"),
            steps=_steps(data.get("steps")),
        )


@dataclass(frozen=True)
class RoundRecord:
    """One aggregated round: the global loss, every metric, the global model's validation, each client's part."""

    round: int
    num_rounds: int
    global_loss: float | None
    clients: dict[str, ClientRound] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def participants(self) -> list[str]:
        return sorted(name for name, c in self.clients.items() if c.took_part)

    @property
    def loss_is_finite(self) -> bool:
        """False when the global loss is NaN or infinite (a sign that something diverged)."""
        return self.global_loss is None or math.isfinite(self.global_loss)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = self.duration_s
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        clients = {name: ClientRound.from_dict(c) for name, c in (data.get("clients") or {}).items()}
        metrics = scalar_metrics(data.get("metrics"))
        if not metrics:  # records written before round metrics existed: derive them from the clients
            metrics = weighted_mean((c.metrics, c.samples) for c in clients.values() if c.took_part)
        validation = scalar_metrics(data.get("validation"))
        if not validation:
            validation = weighted_mean((c.validation, c.validation_samples) for c in clients.values() if c.validation)
        loss = data.get("global_loss", metrics.get("loss"))
        return cls(
            round=int(data["round"]),
            num_rounds=int(data.get("num_rounds") or 0),
            global_loss=None if loss is None else float(loss),
            clients=clients,
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            metrics=metrics,
            validation=validation,
        )


def parse_lines(lines: Iterable[str]) -> list[RoundRecord]:
    """Parse JSON lines into records, skipping a torn last line still being written.

    A later line for the same round replaces the earlier one (validation arrives after training).
    """
    records: dict[int, RoundRecord] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = RoundRecord.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue
        records[record.round] = record
    return [records[k] for k in sorted(records)]


def history_rows(records: Iterable[RoundRecord]) -> list[dict[str, Any]]:
    """One flat row per round x client with every metric (``train_<name>``, ``val_<name>``): ready for pandas."""
    rows = []
    for record in records:
        for name, client in sorted(record.clients.items()):
            row: dict[str, Any] = {
                "round": record.round,
                "client": name,
                "status": client.status,
                "samples": client.samples,
                "loss": client.loss,
                "error": client.error,
                "duration_s": record.duration_s,
                "global_loss": record.global_loss,
            }
            row.update({f"train_{k}": v for k, v in client.metrics.items()})
            row.update({f"val_{k}": v for k, v in client.validation.items()})
            row.update({f"global_val_{k}": v for k, v in record.validation.items()})
            if client.validation_error:
                row["validation_error"] = client.validation_error
            rows.append(row)
    return rows


def _spans(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def participation_notes(records: Iterable[RoundRecord]) -> list[str]:
    """One line per site that failed or was absent in some round (rounds shown from 1), with its last error."""
    failed: dict[str, list[int]] = {}
    absent: dict[str, list[int]] = {}
    errors: dict[str, str] = {}
    for record in records:
        for name, client in record.clients.items():
            if client.status == FAILED:
                failed.setdefault(name, []).append(record.round + 1)
                if client.error:
                    errors[name] = client.error
            elif client.status == ABSENT:
                absent.setdefault(name, []).append(record.round + 1)
    notes = []
    for name in sorted(set(failed) | set(absent)):
        parts = []
        if name in failed:
            word = "round" if len(failed[name]) == 1 else "rounds"
            parts.append(f"failed {word} {_spans(failed[name])}" + (f" ({errors[name]})" if name in errors else ""))
        if name in absent:
            word = "round" if len(absent[name]) == 1 else "rounds"
            parts.append(f"was absent from {word} {_spans(absent[name])}")
        notes.append(f"{name} " + " and ".join(parts))
    return notes
