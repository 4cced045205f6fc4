"""Round records: the one stream every target produces and the dashboard consumes.

A job's server writes one JSON line per finished round (see ``jobcode/rt_recorder.py``);
targets turn those lines, whatever their transport, into ``RoundRecord`` objects.
Rounds are numbered from 0 as in NVFlare; displays show ``round + 1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

TOOK_PART = "ok"
FAILED = "failed"
ABSENT = "absent"
CLIENT_STATES = (TOOK_PART, FAILED, ABSENT)


@dataclass(frozen=True)
class ClientRound:
    """What one client did in one round."""

    status: str  # "ok", "failed" or "absent"
    loss: float | None = None
    samples: int = 0
    error: str | None = None

    @property
    def took_part(self) -> bool:
        return self.status == TOOK_PART


@dataclass(frozen=True)
class RoundRecord:
    """One aggregated round: the global loss and each client's part in it."""

    round: int
    num_rounds: int
    global_loss: float | None
    clients: dict[str, ClientRound] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def participants(self) -> list[str]:
        return sorted(name for name, c in self.clients.items() if c.took_part)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = self.duration_s
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        clients = {
            name: ClientRound(
                status=str(c.get("status", ABSENT)),
                loss=None if c.get("loss") is None else float(c["loss"]),
                samples=int(c.get("samples") or 0),
                error=c.get("error"),
            )
            for name, c in (data.get("clients") or {}).items()
        }
        loss = data.get("global_loss")
        return cls(
            round=int(data["round"]),
            num_rounds=int(data.get("num_rounds") or 0),
            global_loss=None if loss is None else float(loss),
            clients=clients,
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
        )


def parse_lines(lines: Iterable[str]) -> list[RoundRecord]:
    """Parse JSON lines into records, skipping a torn last line still being written."""
    import json

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
