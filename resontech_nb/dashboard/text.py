"""Plain-text dashboard: the ``text/plain`` fallback and what terminal IPython prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..records.rounds import ABSENT, FAILED, TOOK_PART, RoundRecord
from .snapshot import QUEUED, DashboardSnapshot, as_snapshot, format_duration, format_loss, format_round_duration

# Up to this many clients get a column each; beyond it the table shows counts.
MAX_CLIENT_COLUMNS = 8
MAX_FAILURE_LINES = 10
BEST_MARK = "*"


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
    if snap.best_round is not None:
        parts.append(f"best round {snap.best_round + 1}")
    if snap.status == QUEUED:
        parts.append("waiting for a free worker")
    return " \u00b7 ".join(parts)


def warning_lines(snap: DashboardSnapshot) -> list[str]:
    """What looks wrong in the records themselves: a global loss that is NaN or infinite."""
    bad = snap.nonfinite_rounds
    if not bad:
        return []
    rounds = ", ".join(str(r + 1) for r in bad[:8]) + (", ..." if len(bad) > 8 else "")
    return [
        f"warning: the global loss is not finite (NaN or inf) in round{'s' if len(bad) > 1 else ''} {rounds}: "
        "training diverged; lower learning_rate or check the data"
    ]


def failure_lines(snap: DashboardSnapshot, limit: int = MAX_FAILURE_LINES) -> list[str]:
    """``round 2 · site-2: training failed: <error>`` for each failure, the latest ``limit`` of them."""
    failures = snap.failures()
    lines = [f"round {r + 1} \u00b7 {name}: {stage} failed: {error}" for r, name, stage, error in failures[-limit:]]
    if len(failures) > limit:
        lines.insert(0, f"... {len(failures) - limit} earlier failures")
    return lines


def _metric_columns(snap: DashboardSnapshot) -> tuple[list[str], list[str]]:
    """Names of the round-level training metrics (besides loss) and validation metrics that some round has."""
    train = sorted({k for r in snap.rounds for k in r.metrics} - {"loss"})
    val = sorted({k for r in snap.rounds for k in r.validation}, key=lambda k: (k != "loss", k))
    return train, val


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
    train, val = _metric_columns(snap)
    header = ["round", "global loss", *train, *(f"val {k}" for k in val), "duration"]
    header += clients if per_client else ["took part", "failed", "absent"]
    rows = [header]
    for record in snap.rounds:
        mark = f" {BEST_MARK}" if record.round == snap.best_round else ""
        row = [f"{record.round + 1}{mark}", format_loss(record.global_loss)]
        row += [format_loss(record.metrics.get(k)) for k in train]
        row += [format_loss(record.validation.get(k)) for k in val]
        row.append(format_round_duration(record.duration_s))
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
    if snap.data_verdict:
        lines.append(f"data: {snap.data_verdict}")
    lines += warning_lines(snap)
    if snap.rounds:
        lines += ["", _format_table(rounds_table(snap))]
        if snap.best_round is not None:
            lines.append(f"{BEST_MARK} best round (by select_metric): {snap.best_round + 1}")
    else:
        lines.append("no round finished yet")
    failures = failure_lines(snap)
    if failures:
        lines += ["", "failures:", *(f"  {line}" for line in failures)]
    lines += cross_site_lines(snap)
    return "\n".join(lines)


def cross_site_lines(snap: DashboardSnapshot) -> list[str]:
    """One table per metric: rows are models, columns the sites whose data evaluated them."""
    if not snap.cross_site:
        return []
    models = sorted(snap.cross_site)
    sites = sorted({s for per_site in snap.cross_site.values() for s in per_site})
    metrics = sorted({m for per_site in snap.cross_site.values() for v in per_site.values() for m in v},
                     key=lambda m: (m != "loss", m))  # fmt: skip
    lines = []
    for metric in metrics:
        rows = [[f"cross-site {metric}", *sites]]
        for model in models:
            rows.append([model, *(format_loss(snap.cross_site[model].get(s, {}).get(metric)) for s in sites)])
        lines += ["", _format_table(rows)]
    return lines


# -- progress lines (terminal IPython, VS Code without widgets, nbconvert, a plain script) ------------------------
DEFAULT_VALIDATION_METRICS = ("loss", "accuracy")  # what the default loop's global-model validation reports
NUMBER_WIDTH = 9
CLIENT_WIDTH = 8


class ProgressLines:
    """One aligned line per finished round, under a header whose columns are fixed before the first round.

    The columns come from the job's configuration (its clients, the validation metrics it will report), never
    from the records of a round, so a later round with more metrics cannot push values under the wrong header.
    Metrics outside the columns are in :func:`render_text`'s full table and in ``job.history()``.
    """

    def __init__(
        self, clients: Sequence[str], num_rounds: int, validation: Sequence[str] = DEFAULT_VALIDATION_METRICS
    ) -> None:
        self.clients = list(clients) if len(clients) <= MAX_CLIENT_COLUMNS else []
        self.num_rounds = num_rounds
        self.validation = list(validation)
        round_width = max(len("round"), len(f"{num_rounds} of {num_rounds}") + len(BEST_MARK) + 1)
        self.columns: list[tuple[str, int]] = [("round", round_width), ("global loss", len("global loss"))]
        self.columns += [(f"val {k}", max(NUMBER_WIDTH, len(f"val {k}"))) for k in self.validation]
        self.columns.append(("duration", len("duration")))
        if self.clients:
            self.columns += [(name, max(CLIENT_WIDTH, len(name))) for name in self.clients]
        else:
            self.columns += [("took part", len("took part")), ("failed", len("failed"))]
        self.printed = 0  # rounds already given a line

    @classmethod
    def for_job(cls, job: Any) -> ProgressLines:
        """Columns from what the job was submitted with: its clients, rounds and validation metrics."""
        validation = getattr(job, "validation_metrics", DEFAULT_VALIDATION_METRICS)
        return cls(list(job.clients or ()), int(job.num_rounds or 0), validation)

    def header(self) -> str:
        return self._join([name for name, _ in self.columns])

    def line(self, record: RoundRecord, best_round: int | None = None) -> str:
        mark = f" {BEST_MARK}" if record.round == best_round else ""
        cells = [f"{record.round + 1} of {self.num_rounds or '?'}{mark}", format_loss(record.global_loss)]
        cells += [format_loss(record.validation.get(k)) for k in self.validation]
        cells.append(format_round_duration(record.duration_s))
        if self.clients:
            cells += [_client_cell(record, name) for name in self.clients]
        else:
            states = [c.status for c in record.clients.values()]
            cells += [str(states.count(TOOK_PART)), str(states.count(FAILED))]
        return self._join(cells)

    def _join(self, cells: list[str]) -> str:
        out = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, (_, width)) in enumerate(zip(cells, self.columns, strict=True))
        ]
        return "  ".join(out).rstrip()

    def new_lines(self, snapshot: DashboardSnapshot | Mapping[str, Any]) -> list[str]:
        """The lines not yet given for ``snapshot``'s finished rounds (the header before the first), and the
        final summary once the job has ended."""
        snap = as_snapshot(snapshot)
        lines = [] if self.printed or not snap.rounds else [self.header()]
        lines += [self.line(record, snap.best_round) for record in snap.rounds[self.printed :]]
        self.printed = max(self.printed, len(snap.rounds))
        if snap.final:
            lines += summary_lines(snap)
        return lines


def summary_lines(snap: DashboardSnapshot) -> list[str]:
    """What a finished job ends with: the failures and warnings, then its final status line (and its error)."""
    failures = failure_lines(snap)
    lines = ["failures:", *(f"  {line}" for line in failures)] if failures else []
    lines += warning_lines(snap)
    lines.append(status_line(snap))
    if snap.error:
        lines.append(f"error: {snap.error}")
    return lines
