"""The ipywidgets view: small widgets built by small functions, state in traitlets.

``DashboardView`` knows nothing about jobs or targets: it is fed ``DashboardSnapshot`` objects,
draws through ``DashboardPictures`` (only the parts that changed reach the browser) and calls
``on_abort`` when the Abort button is pressed. The metric dropdown is linked to the ``metric`` trait.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import traitlets

from .picture import STATUS_COLOURS, DashboardPictures, chosen_metric
from .series import metric_names
from .snapshot import FINAL_STATES, QUEUED, DashboardSnapshot, format_duration, format_loss
from .text import failure_lines, warning_lines

log = logging.getLogger(__name__)

STATE_NAMES = {0: "not_run", 1: "ok", 2: "failed", 3: "absent"}
_STATE_WORDS = np.array([STATE_NAMES[code] for code in range(4)], dtype=object)

_CSS = """
<style>
.rt-dashboard {font-family: var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #1f2937);}
.rt-title {font-size: 16px; font-weight: 700; margin: 2px 0 0 0;}
.rt-sub {font-size: 12px; font-weight: 400; color: #6b7280; margin-left: 6px;}
.rt-status {font-size: 13.5px; line-height: 28px;}
.rt-badge {display: inline-block; color: white; font-weight: 700; font-size: 12px; padding: 0 8px;
           border-radius: 4px; line-height: 20px; margin-right: 8px;}
.rt-error {color: #c81e36; font-size: 12.5px; line-height: 18px;}
.rt-warning {color: #b45309; font-size: 12.5px; line-height: 18px; font-weight: 600;}
.rt-failures {font-size: 12px; line-height: 17px; color: #374151;}
.rt-failures b {color: #c81e36;}
</style>
"""


# -- small builders ----------------------------------------------------------------------
def title_html(snap: DashboardSnapshot) -> str:
    name = html.escape(snap.name or snap.job_id or "job")
    sub = " \u00b7 ".join(html.escape(p) for p in (f"id {snap.job_id}" if snap.job_id else "", snap.target) if p)
    return f'{_CSS}<div class="rt-title">Federated job {name}<span class="rt-sub">{sub}</span></div>'


def status_html(snap: DashboardSnapshot, problem: str = "") -> str:
    """Coloured status badge, round k of N, elapsed time, last global loss, best round; errors and warnings below."""
    colour = STATUS_COLOURS.get(snap.status, "#6b7280")
    parts = [f"<b>round {snap.rounds_done} of {snap.num_rounds or '?'}</b>"]
    if snap.elapsed_s is not None:
        parts.append(f"elapsed {format_duration(snap.elapsed_s)}")
    if snap.last_global_loss is not None:
        parts.append(f"global loss <b>{format_loss(snap.last_global_loss)}</b>")
    if snap.best_round is not None:
        parts.append(f"best round <b>{snap.best_round + 1}</b>")
    if snap.status == QUEUED:
        parts.append("waiting for a free worker on the platform")
    text = (
        f'<div class="rt-status"><span class="rt-badge" style="background:{colour}">{html.escape(snap.status)}</span>'
        + " \u00b7 ".join(parts)
        + "</div>"
    )
    for line in (snap.error, problem):
        if line:
            text += f'<div class="rt-error">{html.escape(line)}</div>'
    for line in warning_lines(snap):
        text += f'<div class="rt-warning">{html.escape(line)}</div>'
    return text


def failures_html(snap: DashboardSnapshot) -> str:
    lines = failure_lines(snap)
    if not lines:
        return ""
    items = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
    return f'<div class="rt-failures"><b>Failures</b>{items}</div>'


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


def make_image(css_class: str, max_width: str = "1000px") -> widgets.Image:
    image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width=max_width, height="auto"))
    image.add_class(css_class)
    return image


def make_metric_dropdown() -> widgets.Dropdown:
    dropdown = widgets.Dropdown(options=["loss"], value="loss", description="metric",
                                layout=widgets.Layout(width="260px"))  # fmt: skip
    dropdown.add_class("rt-metric")
    return dropdown


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
    metric = traitlets.Unicode("loss", help="the metric the charts show (the dropdown)")
    metric_options = traitlets.List(traitlets.Unicode(), help="every metric the records hold")
    best_round = traitlets.Int(None, allow_none=True, help="the best round, from 1 as shown")
    nonfinite_rounds = traitlets.List(traitlets.Int(), help="rounds (from 1) whose global loss is NaN or infinite")
    failures = traitlets.List(help="[{'round': from 1, 'client', 'stage': training|validation, 'error'}, ...]")
    cross_site = traitlets.Dict(help="{model: {site: {metric: value}}}")
    data_summary = traitlets.Dict(help="the sites' data before training: {'sites', 'num_classes', 'counts', 'verdict'}")

    def __init__(
        self,
        on_abort: Callable[[], None] | None = None,
        pictures: DashboardPictures | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        super().__init__()
        self._on_abort = on_abort
        self.pictures = pictures or DashboardPictures()
        self._lock = lock or threading.RLock()
        self._snapshot: DashboardSnapshot | None = None
        self.title = widgets.HTML()
        self.status_line = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.abort_button = make_abort_button(self._abort_clicked)
        self.metric_dropdown = make_metric_dropdown()
        traitlets.link((self.metric_dropdown, "value"), (self, "metric"))
        self.images = {
            "data": make_image("rt-data-summary"),
            "train": make_image("rt-train-chart", "500px"),
            "val": make_image("rt-val-chart", "500px"),
            "durations": make_image("rt-durations"),
            "grid": make_image("rt-grid-image"),
            "cross_site": make_image("rt-cross-site"),
        }
        self.images["cross_site"].layout.display = "none"
        self.images["data"].layout.display = "none"
        self.failures_box = widgets.HTML(layout=widgets.Layout(max_width="1000px"))
        self.widget = widgets.VBox(
            [
                self.title,
                widgets.HBox([self.status_line, self.abort_button], layout=widgets.Layout(align_items="center")),
                self.images["data"],
                self.metric_dropdown,
                widgets.HBox([self.images["train"], self.images["val"]], layout=widgets.Layout(max_width="1000px")),
                self.images["durations"],
                self.images["grid"],
                self.failures_box,
                self.images["cross_site"],
            ],
            layout=widgets.Layout(max_width="1020px", padding="4px 8px 8px 8px", border="1px solid #e5e7eb"),
        )
        self.widget.add_class("rt-dashboard")

    # -- feeding --------------------------------------------------------------------------
    def update(self, snap: DashboardSnapshot, *, redraw: bool = True) -> None:
        """Show ``snap``. With ``redraw=False`` only the cheap status line is refreshed (elapsed time)."""
        with self._lock:
            self._snapshot = snap
            with self.hold_trait_notifications():
                self.elapsed_s = snap.elapsed_s
                if redraw:
                    self._set_traits(snap)
            if redraw:
                self.title.value = title_html(snap)
                self._draw(snap)
                self.failures_box.value = failures_html(snap)
                self._sync_abort_button()
            self.status_line.value = status_html(snap, self.problem)

    def _set_traits(self, snap: DashboardSnapshot) -> None:
        self.status = snap.status
        self.error = snap.error
        self.rounds_done = snap.rounds_done
        self.num_rounds = snap.num_rounds
        self.last_global_loss = snap.last_global_loss
        self.participation = {
            "clients": snap.all_clients,
            "rounds": list(range(1, snap.total_rounds + 1)),
            "cells": _STATE_WORDS[snap.participation_codes()].tolist(),
        }
        self.best_round = None if snap.best_round is None else snap.best_round + 1
        self.nonfinite_rounds = [r + 1 for r in snap.nonfinite_rounds]
        self.failures = [{"round": r + 1, "client": c, "stage": s, "error": e} for r, c, s, e in snap.failures()]
        self.cross_site = {m: {s: dict(v) for s, v in sites.items()} for m, sites in snap.cross_site.items()}
        self.data_summary = dict(snap.data_summary or {})
        options = metric_names(snap) or ["loss"]
        if options != list(self.metric_dropdown.options):
            current = chosen_metric(snap, self.metric)
            with self.metric_dropdown.hold_trait_notifications():
                self.metric_dropdown.options = options
                self.metric_dropdown.value = current if current in options else options[0]
        self.metric_options = options

    def _draw(self, snap: DashboardSnapshot) -> None:
        """Send the browser the pictures whose data changed, and only those."""
        for part, png in self.pictures.update(snap, self.metric).items():
            image = self.images[part]
            if png is None:
                image.layout.display = "none"
            else:
                image.value = png
                image.layout.display = None

    @traitlets.observe("metric")
    def _metric_changed(self, _change: dict) -> None:
        with self._lock:
            if self._snapshot is not None:
                self._draw(self._snapshot)

    @traitlets.observe("problem")
    def _problem_changed(self, _change: dict) -> None:
        if self._snapshot is not None:
            self.status_line.value = status_html(self._snapshot, self.problem)

    def _sync_abort_button(self) -> None:
        if self.status in FINAL_STATES:
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
