"""The ipywidgets view: small widgets built by small functions, state in traitlets.

``DashboardView`` knows nothing about jobs or targets: it is fed ``DashboardSnapshot`` objects
and calls ``on_abort`` when the Abort button is pressed.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

import ipywidgets as widgets
import traitlets

from .plots import CELL_COLOURS, STATUS_COLOURS, render_charts_png
from .snapshot import (
    CELL_ABSENT,
    CELL_FAILED,
    CELL_NAMES,
    CELL_TOOK_PART,
    NOT_RUN,
    DashboardSnapshot,
    format_duration,
    format_loss,
)

log = logging.getLogger(__name__)

CELL_CLASSES = {NOT_RUN: "rt-notrun", CELL_TOOK_PART: "rt-ok", CELL_FAILED: "rt-failed", CELL_ABSENT: "rt-absent"}
STATE_NAMES = {NOT_RUN: "not_run", CELL_TOOK_PART: "ok", CELL_FAILED: "failed", CELL_ABSENT: "absent"}

_CSS = """
<style>
.rt-dashboard {font-family: var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #1f2937);}
.rt-title {font-size: 16px; font-weight: 700; margin: 2px 0 0 0;}
.rt-sub {font-size: 12px; font-weight: 400; color: #6b7280; margin-left: 6px;}
.rt-status {font-size: 13.5px; line-height: 28px;}
.rt-badge {display: inline-block; color: white; font-weight: 700; font-size: 12px; padding: 0 8px;
           border-radius: 4px; line-height: 20px; margin-right: 8px;}
.rt-error {color: #c81e36; font-size: 12.5px; line-height: 18px;}
.rt-section {font-size: 13px; font-weight: 700; margin: 4px 0 2px 0;}
.rt-grid-wrap {overflow-x: auto; max-width: 100%;}
table.rt-grid {border-collapse: separate; border-spacing: 2px; font-size: 11px; line-height: 11px;}
table.rt-grid th {font-weight: 400; color: #4b5563; padding: 0 6px 0 0; text-align: right; white-space: nowrap;}
table.rt-grid thead th {text-align: center; padding: 0 0 2px 0;}
table.rt-grid .rt-tick {display: inline-block; width: 0; overflow: visible; white-space: nowrap; text-align: left;}
table.rt-grid td {padding: 0; border-radius: 2px;}
.rt-ok, td[data-state=ok] {background: OK;} .rt-failed, td[data-state=failed] {background: FAILED;}
.rt-absent, td[data-state=absent] {background: ABSENT;} .rt-notrun, td[data-state=not_run] {background: NOTRUN;}
.rt-cells-22 td {width: 22px; height: 22px;} .rt-cells-16 td {width: 16px; height: 16px;}
.rt-cells-10 td {width: 10px; height: 10px;} .rt-cells-7 td {width: 7px; height: 7px;}
.rt-legend {font-size: 12px; color: #374151; margin-top: 4px;}
.rt-swatch {display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px;
            margin: 0 4px 0 10px; border: 1px solid #d1d5db;}
</style>
"""
for _word, _colour in zip(("NOTRUN", "OK", "FAILED", "ABSENT"), CELL_COLOURS, strict=True):
    _CSS = _CSS.replace(f"background: {_word};", f"background: {_colour};")


# -- small builders ----------------------------------------------------------------------
def title_html(snap: DashboardSnapshot) -> str:
    name = html.escape(snap.name or snap.job_id or "job")
    sub = " \u00b7 ".join(html.escape(p) for p in (f"id {snap.job_id}" if snap.job_id else "", snap.target) if p)
    return f'{_CSS}<div class="rt-title">Federated job {name}<span class="rt-sub">{sub}</span></div>'


def status_html(snap: DashboardSnapshot, problem: str = "") -> str:
    """Coloured status badge, round k of N, elapsed time, last global loss; the error, if any, below."""
    colour = STATUS_COLOURS.get(snap.status, "#6b7280")
    parts = [f"<b>round {snap.rounds_done} of {snap.num_rounds or '?'}</b>"]
    if snap.elapsed_s is not None:
        parts.append(f"elapsed {format_duration(snap.elapsed_s)}")
    if snap.last_global_loss is not None:
        parts.append(f"global loss <b>{format_loss(snap.last_global_loss)}</b>")
    text = (
        f'<div class="rt-status"><span class="rt-badge" style="background:{colour}">{html.escape(snap.status)}</span>'
        + " \u00b7 ".join(parts)
        + "</div>"
    )
    for line in (snap.error, problem):
        if line:
            text += f'<div class="rt-error">{html.escape(line)}</div>'
    return text


def grid_html(snap: DashboardSnapshot) -> str:
    """The client x round participation grid as an HTML table, with a legend (rounds shown from 1)."""
    clients, grid = snap.participation()
    n_rounds = snap.total_rounds
    size = 22 if n_rounds <= 12 else 16 if n_rounds <= 30 else 10 if n_rounds <= 60 else 7
    every = 1 if n_rounds <= 30 else 5 if n_rounds <= 60 else 10
    labels = [str(r + 1) if (r + 1) % every == 0 or r == 0 else "" for r in range(n_rounds)]
    # Narrow columns: a zero-width label overflows to the right instead of widening its column.
    head = "".join(
        f"<th>{label}</th>" if every == 1 else f'<th><span class="rt-tick">{label}</span></th>' for label in labels
    )
    rows = []
    by_round = {r.round: r for r in snap.rounds}
    detailed = len(clients) * n_rounds <= 1500  # hover text names losses and errors while the grid is small
    for name, cells in zip(clients, grid, strict=True):
        tds = []
        for col, code in enumerate(cells):
            tip = f"{name} \u00b7 round {col + 1}: {CELL_NAMES[code]}"
            client = by_round[col].clients.get(name) if detailed and col in by_round else None
            if client is not None and client.loss is not None:
                tip += f" (loss {format_loss(client.loss)})"
            elif client is not None and client.error:
                tip += f" ({client.error[:80]})"
            tds.append(f'<td data-state="{STATE_NAMES[code]}" title="{html.escape(tip)}"></td>')
        rows.append(f'<tr data-client="{html.escape(name)}"><th>{html.escape(name)}</th>{"".join(tds)}</tr>')
    legend = "".join(
        f'<span class="rt-swatch {CELL_CLASSES[code]}"></span>{CELL_NAMES[code]}'
        for code in (CELL_TOOK_PART, CELL_FAILED, CELL_ABSENT, NOT_RUN)
    )
    if not clients:
        body = '<div class="rt-legend">no clients known yet</div>'
    else:
        body = (
            f'<div class="rt-grid-wrap"><table class="rt-grid rt-cells-{size}">'
            f"<thead><tr><th>round</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
    return (
        f'<div class="rt-section">Participation (client \u00d7 round)</div>{body}<div class="rt-legend">{legend}</div>'
    )


def make_abort_button(on_click: Callable[[], None]) -> widgets.Button:
    button = widgets.Button(
        description="Abort job",
        button_style="danger",
        icon="stop",
        tooltip="Stop the federated job",
        layout=widgets.Layout(width="120px", margin="2px 0 0 16px"),
    )
    button.on_click(lambda _button: on_click())
    return button


def make_chart_image() -> widgets.Image:
    return widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1000px", height="auto"))


# -- the view ----------------------------------------------------------------------------
class DashboardView(traitlets.HasTraits):
    """Live widgets for one job. Feed it snapshots with ``update``; read its state from the traits."""

    status = traitlets.Unicode("SUBMITTED")
    error = traitlets.Unicode(None, allow_none=True)
    rounds_done = traitlets.Int(0)
    num_rounds = traitlets.Int(0)
    last_global_loss = traitlets.Float(None, allow_none=True)
    elapsed_s = traitlets.Float(None, allow_none=True)
    problem = traitlets.Unicode("", help="a transient problem reaching the job (shown under the status)")
    participation = traitlets.Dict(help="{'clients': [...], 'rounds': [1..N], 'cells': [[state, ...], ...]}")

    def __init__(self, on_abort: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._on_abort = on_abort
        self._snapshot: DashboardSnapshot | None = None
        self.title = widgets.HTML()
        self.status_line = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.abort_button = make_abort_button(self._abort_clicked)
        self.charts = make_chart_image()
        self.grid = widgets.HTML(layout=widgets.Layout(max_width="100%"))
        self.widget = widgets.VBox(
            [
                self.title,
                widgets.HBox([self.status_line, self.abort_button], layout=widgets.Layout(align_items="center")),
                self.charts,
                self.grid,
            ],
            layout=widgets.Layout(max_width="1020px", padding="4px 8px 8px 8px", border="1px solid #e5e7eb"),
        )
        self.widget.add_class("rt-dashboard")

    # -- feeding --------------------------------------------------------------------------
    def update(self, snap: DashboardSnapshot, *, redraw: bool = True, charts_png: bytes | None = None) -> None:
        """Show ``snap``. With ``redraw=False`` only the cheap status line is refreshed (elapsed time).

        ``charts_png`` is the chart image when the caller has already drawn it (see ``render_pictures``).
        """
        self._snapshot = snap
        with self.hold_trait_notifications():
            self.elapsed_s = snap.elapsed_s
            if redraw:
                self.status = snap.status
                self.error = snap.error
                self.rounds_done = snap.rounds_done
                self.num_rounds = snap.num_rounds
                self.last_global_loss = snap.last_global_loss
                clients, grid = snap.participation()
                self.participation = {
                    "clients": clients,
                    "rounds": list(range(1, snap.total_rounds + 1)),
                    "cells": [[STATE_NAMES[c] for c in row] for row in grid],
                }
        if redraw:
            self.title.value = title_html(snap)
            self.charts.value = charts_png if charts_png is not None else render_charts_png(snap)
            self.grid.value = grid_html(snap)
            self._sync_abort_button()
        self.status_line.value = status_html(snap, self.problem)

    @traitlets.observe("problem")
    def _problem_changed(self, _change: dict) -> None:
        if self._snapshot is not None:
            self.status_line.value = status_html(self._snapshot, self.problem)

    def _sync_abort_button(self) -> None:
        if self.status in ("FINISHED", "FAILED", "ABORTED"):
            self.abort_button.disabled = True
            self.abort_button.description = "Ended"
            self.abort_button.button_style = ""

    def _abort_clicked(self) -> None:
        if self._on_abort is None:
            return
        self.abort_button.disabled = True
        self.abort_button.description = "Aborting\u2026"
        try:
            self._on_abort()
        except Exception as exc:  # shown to the user rather than lost in a comm handler's log
            log.warning("abort failed: %s", exc)
            self.problem = f"abort failed: {exc}"
            self.abort_button.disabled = False
            self.abort_button.description = "Abort job"
