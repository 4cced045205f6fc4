"""A plain, immutable picture of a job at one moment: what every dashboard view draws from.

The views (widgets, PNG, text) never talk to a ``Job`` or a target; they take a
``DashboardSnapshot``. That keeps them target-agnostic, testable and benchmarkable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..records.rounds import ABSENT, FAILED, TOOK_PART, RoundRecord, scalar_metrics
from ..records.status import FINAL_STATES, QUEUED

__all__ = ["FINAL_STATES", "QUEUED", "DashboardSnapshot", "as_snapshot", "take_snapshot"]

# Cell codes of the participation grid (client x round).
NOT_RUN = 0
CELL_TOOK_PART = 1
CELL_FAILED = 2
CELL_ABSENT = 3
CELL_NAMES = {NOT_RUN: "not run yet", CELL_TOOK_PART: "took part", CELL_FAILED: "failed", CELL_ABSENT: "absent"}
_CELL_OF_STATUS = {TOOK_PART: CELL_TOOK_PART, FAILED: CELL_FAILED, ABSENT: CELL_ABSENT}


@dataclass(frozen=True)
class DashboardSnapshot:
    """Status and round records of one job, as the dashboard shows them."""

    status: str
    num_rounds: int
    clients: tuple[str, ...] = ()
    rounds: tuple[RoundRecord, ...] = ()
    job_id: str = ""
    name: str = ""
    target: str = ""
    error: str | None = None
    elapsed_s: float | None = None
    best_round: int | None = None  # the round (from 0) whose global model scored best on select_metric
    cross_site: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    # The sites' data before training, from the job's settings: {"sites", "num_classes", "counts", "verdict"}
    data_summary: Mapping[str, Any] | None = None

    # -- derived values --------------------------------------------------------------
    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def rounds_done(self) -> int:
        return len(self.rounds)

    @cached_property
    def total_rounds(self) -> int:
        """Rounds to draw: the planned number, or more if the records say so."""
        last = max((r.round + 1 for r in self.rounds), default=0)
        return max(self.num_rounds, last, 1)

    @property
    def last_global_loss(self) -> float | None:
        for record in reversed(self.rounds):
            if record.global_loss is not None:
                return record.global_loss
        return None

    @property
    def all_clients(self) -> list[str]:
        """The job's clients in their given order, then any other site named in the records."""
        return list(self._all_clients)

    @cached_property
    def _all_clients(self) -> tuple[str, ...]:
        extra = sorted({name for r in self.rounds for name in r.clients} - set(self.clients))
        return (*self.clients, *extra)

    @property
    def nonfinite_rounds(self) -> list[int]:
        """Rounds (from 0) whose global loss is NaN or infinite: training diverged there."""
        return [r.round for r in self.rounds if not r.loss_is_finite]

    def failures(self) -> list[tuple[int, str, str, str]]:
        """``(round from 0, client, "training" or "validation", error)`` for every failure, in round order."""
        return list(self._failures)

    @cached_property
    def _failures(self) -> tuple[tuple[int, str, str, str], ...]:
        out = []
        for record in self.rounds:
            for name, client in sorted(record.clients.items()):
                if client.status == FAILED:
                    out.append((record.round, name, "training", client.error or "no message"))
                if client.validation_error:
                    out.append((record.round, name, "validation", client.validation_error))
        return tuple(out)

    def participation(self) -> tuple[list[str], list[list[int]]]:
        """The client x round grid: rows are clients, columns rounds 0..total_rounds-1, cells ``CELL_*`` codes.

        A client missing from a finished round's record counts as absent.
        """
        clients = self.all_clients
        return clients, self.participation_codes().tolist()

    def participation_codes(self) -> np.ndarray:
        """The same grid as a ``uint8`` array (clients x rounds)."""
        return self._codes.copy()

    @cached_property
    def _codes(self) -> np.ndarray:
        clients = self._all_clients
        row_of = {name: i for i, name in enumerate(clients)}
        codes = np.full((len(clients), self.total_rounds), NOT_RUN, dtype=np.uint8)
        for record in self.rounds:
            col = record.round
            if col < 0:
                continue
            codes[:, col] = CELL_ABSENT
            for name, client in record.clients.items():
                codes[row_of[name], col] = _CELL_OF_STATUS.get(client.status, CELL_ABSENT)
        return codes

    def fingerprint(self) -> tuple:
        """Changes whenever something a picture shows changes (elapsed time excluded)."""
        return (self.status, self.error, self.num_rounds, self.clients, self.rounds, self.best_round, self.cross_site,
                self.data_summary)

    @cached_property
    def data_counts(self) -> tuple[list[str], np.ndarray] | None:
        """The sites and their rows per class (NaN where a site withheld a small bin), or None when unknown."""
        summary = _data_summary(self.data_summary)
        if summary is None:
            return None
        values = np.array([[np.nan if c is None else float(c) for c in row] for row in summary["counts"]], dtype=float)
        return list(summary["sites"]), values.reshape(len(summary["sites"]), -1)

    @property
    def data_verdict(self) -> str:
        """How skewed the sites' labels are, in one line ("" when unknown)."""
        summary = _data_summary(self.data_summary)
        return str(summary.get("verdict") or "") if summary else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: what the saved notebook carries next to the static picture."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "target": self.target,
            "status": self.status,
            "error": self.error,
            "num_rounds": self.num_rounds,
            "clients": self.all_clients,
            "rounds": [_compact(r.to_dict()) for r in self.rounds],
            "best_round": self.best_round,
            "cross_site": {m: {s: dict(v) for s, v in sites.items()} for m, sites in self.cross_site.items()},
            "data_summary": _data_summary(self.data_summary),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DashboardSnapshot:
        """Build a snapshot from a mapping whose rounds are ``RoundRecord`` objects or record dicts."""
        rounds = tuple(r if isinstance(r, RoundRecord) else RoundRecord.from_dict(r) for r in data.get("rounds") or ())
        return cls(
            status=str(data.get("status") or "SUBMITTED"),
            num_rounds=int(data.get("num_rounds") or 0),
            clients=tuple(data.get("clients") or ()),
            rounds=rounds,
            job_id=str(data.get("job_id") or ""),
            name=str(data.get("name") or ""),
            target=str(data.get("target") or ""),
            error=data.get("error"),
            elapsed_s=data.get("elapsed_s"),
            best_round=None if data.get("best_round") is None else int(data["best_round"]),
            cross_site=_cross_site(data.get("cross_site")),
            data_summary=_data_summary(data.get("data_summary")),
        )


_COUNTS = ("samples", "validation_samples")


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    """A record dict without the empty fields of its clients (``RoundRecord.from_dict`` reads it back the same)."""
    clients = {
        name: {k: v for k, v in client.items() if not (v is None or v == {} or (k in _COUNTS and v == 0))}
        for name, client in record.get("clients", {}).items()
    }
    return {**record, "clients": clients}


def _cross_site(value: Any) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {site: {metric: float}}}`` with non-numbers dropped."""
    return {
        str(model): {str(site): scalar_metrics(metrics) for site, metrics in (sites or {}).items()}
        for model, sites in (value or {}).items()
    }


def _data_summary(value: Any) -> dict[str, Any] | None:
    """``{"sites", "num_classes", "counts", "verdict"}`` when ``value`` has that shape (a row per site), else None."""
    if not isinstance(value, Mapping):
        return None
    sites, counts = value.get("sites"), value.get("counts")
    if not isinstance(sites, (list, tuple)) or not isinstance(counts, (list, tuple)) or len(sites) != len(counts):
        return None
    if not sites or not all(isinstance(row, (list, tuple)) and len(row) == len(counts[0]) for row in counts):
        return None
    if not all(c is None or isinstance(c, (int, float)) for row in counts for c in row):
        return None
    return {
        "sites": [str(site) for site in sites],
        "num_classes": len(counts[0]),
        "counts": [list(row) for row in counts],
        "verdict": str(value.get("verdict") or ""),
    }


def as_snapshot(value: DashboardSnapshot | Mapping[str, Any]) -> DashboardSnapshot:
    return value if isinstance(value, DashboardSnapshot) else DashboardSnapshot.from_dict(value)


def take_snapshot(job: Any, *, ended_at: float | None = None) -> DashboardSnapshot:
    """Ask the job (a ``Job``: anything with ``observe()``, ``id``, ``num_rounds``, ``clients``) for its state once.

    ``ended_at`` freezes the elapsed time once the job has ended.
    """
    seen = job.observe()
    elapsed = None
    if seen.started_at is not None:
        elapsed = max(0.0, (ended_at if ended_at is not None else time.time()) - seen.started_at)
    return DashboardSnapshot(
        status=seen.state.status,
        num_rounds=int(job.num_rounds or 0),
        clients=tuple(job.clients or ()),
        rounds=tuple(seen.rounds),
        job_id=str(job.id),
        name=str(getattr(job, "name", "") or ""),
        target=str(getattr(job, "target", "") or ""),
        error=seen.state.error,
        elapsed_s=elapsed,
        best_round=seen.best_round,
        cross_site=_cross_site(seen.cross_site),
        data_summary=_data_summary((getattr(job, "settings", None) or {}).get("data_summary")),
    )


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m 07s``, ``1h 02m``; an em dash when unknown."""
    if seconds is None:
        return "\u2014"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_round_duration(seconds: float | None) -> str:
    """Round durations keep a decimal under a minute (``3.5s``); longer ones read like ``format_duration``."""
    if seconds is not None and seconds < 59.95:
        return f"{max(seconds, 0.0):.1f}s"
    return format_duration(seconds)


def format_loss(loss: float | None) -> str:
    """Four decimals (or significant digits for tiny and huge values); ``NaN``/``inf`` spelt out."""
    if loss is None:
        return "\u2014"
    if not math.isfinite(loss):
        return "NaN" if math.isnan(loss) else ("inf" if loss > 0 else "-inf")
    return f"{loss:.4g}" if abs(loss) < 1e-3 or abs(loss) >= 1e4 else f"{loss:.4f}"
