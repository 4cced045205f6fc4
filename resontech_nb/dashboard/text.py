"""Plain-text dashboard: the ``text/plain`` fallback and what terminal IPython prints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..records import ABSENT, FAILED, TOOK_PART, RoundRecord
from .snapshot import DashboardSnapshot, as_snapshot, format_duration, format_loss, format_round_duration

# Up to this many clients get a column each; beyond it the table shows counts.
MAX_CLIENT_COLUMNS = 8


def title_line(snap: DashboardSnapshot) -> str:
    where = ", ".join(part for part in (f"id {snap.job_id}" if snap.job_id else "", snap.target) if part)
    name = snap.name or snap.job_id or "job"
    return f"Federated job {name}" + (f" ({where})" if where else "")


def status_line(snap: DashboardSnapshot) -> str:
    """``RUNNING · round 3 of 5 · elapsed 1m 02s · global loss 0.4123``."""
    parts = [snap.status, f"round {snap.rounds_done} of {snap.num_rounds or '?'}"]
    if snap.elapsed_s is not None:
        parts.append(f"elapsed {format_duration(snap.elapsed_s)}")
    if snap.last_global_loss is not None:
        parts.append(f"global loss {format_loss(snap.last_global_loss)}")
    return " \u00b7 ".join(parts)


def _client_cell(record: RoundRecord, name: str) -> str:
    client = record.clients.get(name)
    if client is None or client.status == ABSENT:
        return "absent"
    if client.status == FAILED:
        return "FAILED"
    return format_loss(client.loss) if client.loss is not None else "ok"


def rounds_table(snap: DashboardSnapshot) -> list[list[str]]:
    """Header row plus one row per finished round (rounds shown from 1)."""
    clients = snap.all_clients
    per_client = len(clients) <= MAX_CLIENT_COLUMNS
    header = ["round", "global loss", "duration"]
    header += clients if per_client else ["took part", "failed", "absent"]
    rows = [header]
    for record in snap.rounds:
        row = [str(record.round + 1), format_loss(record.global_loss), format_round_duration(record.duration_s)]
        if per_client:
            row += [_client_cell(record, name) for name in clients]
        else:
            states = [record.clients[n].status if n in record.clients else ABSENT for n in clients]
            failed = [n for n, s in zip(clients, states, strict=False) if s == FAILED]
            named = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
            row += [
                str(states.count(TOOK_PART)),
                str(len(failed)) + (f" ({named})" if failed else ""),
                str(states.count(ABSENT)),
            ]
        rows.append(row)
    return rows


def _format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(w) if i == 0 and n == 0 else cell.rjust(w) for i, (cell, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_text(snapshot: DashboardSnapshot | Mapping[str, Any]) -> str:
    """The whole dashboard as text: title, status line, error if any, and the table of rounds."""
    snap = as_snapshot(snapshot)
    lines = [title_line(snap), status_line(snap)]
    if snap.error:
        lines.append(f"error: {snap.error}")
    if snap.rounds:
        lines += ["", _format_table(rounds_table(snap))]
    else:
        lines.append("no round finished yet")
    return "\n".join(lines)
