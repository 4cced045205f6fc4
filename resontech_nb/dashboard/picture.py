"""The dashboard's pictures: each part on its own reusable figure, and the composed static PNG.

``DashboardPictures`` keeps one chart per part (training metric, validation metric, round
durations, participation grid, cross-site heatmap). ``update`` redraws only the parts whose data
changed and returns their PNGs (what the live widget needs); ``compose`` stacks the parts' pixels
under a header (title, status, warnings, failures) into the one picture the saved notebook keeps,
without drawing any part again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from .canvas import DPI, MUTED, clip, encode_png
from .charts import DurationChart, MetricChart
from .matrices import CrossSiteChart, DataChart, ParticipationChart
from .series import DEFAULT_METRIC, TRAIN, VALIDATION, metric_names, metric_series
from .snapshot import DashboardSnapshot, as_snapshot
from .text import failure_lines, status_line, title_line, warning_lines

PARTS = ("data", "train", "val", "durations", "grid", "cross_site")
STATUS_COLOURS = {
    "SUBMITTED": "#6b7280",
    "QUEUED": "#7c3aed",
    "RUNNING": "#1d6fd8",
    "FINISHED": "#2f8a4c",
    "FAILED": "#c81e36",
    "ABORTED": "#c46a0b",
}
WIDTH_IN = 10.0
MAX_NOTE_LINES = 6
MAX_KEPT_CHARTS = 8


def chosen_metric(snap: DashboardSnapshot, wanted: str | None) -> str:
    """``wanted`` when the records have it, else ``loss``, else the first metric recorded."""
    names = metric_names(snap)
    if wanted and wanted in names:
        return wanted
    return DEFAULT_METRIC if DEFAULT_METRIC in names or not names else names[0]


class DashboardPictures:
    """The pictures of one dashboard, redrawn part by part."""

    def __init__(self) -> None:
        self._metric_charts: dict[tuple[str, str], MetricChart] = {}  # kept per metric: switching back is a blit
        self.durations = DurationChart()
        self.grid = ParticipationChart()
        self.cross_site = CrossSiteChart()
        self.data = DataChart()
        self._pixels: dict[str, np.ndarray | None] = dict.fromkeys(PARTS)
        self._pngs: dict[str, bytes | None] = dict.fromkeys(PARTS)

    def update(self, snap: DashboardSnapshot, metric: str | None = None) -> dict[str, bytes | None]:
        """Bring every part up to date with ``snap``; return the PNGs of the parts that changed.

        A part without anything to show (no data summary, no cross-site evaluation) maps to None.
        """
        metric = chosen_metric(snap, metric)
        drawn = {
            "data": self.data.pixels(snap),
            "train": self._chart(TRAIN, metric).pixels(
                metric_series(snap, metric, TRAIN), snap.total_rounds, snap.best_round
            ),
            "val": self._chart(VALIDATION, metric).pixels(
                metric_series(snap, metric, VALIDATION), snap.total_rounds, snap.best_round
            ),
            "durations": self.durations.pixels(snap),
            "cross_site": self.cross_site.pixels(snap, metric),
        }
        changed: dict[str, bytes | None] = {}
        for part, (pixels, redrawn) in drawn.items():
            if redrawn or (pixels is None) != (self._pixels[part] is None):
                self._pixels[part] = pixels
                encoded = None if pixels is None else encode_png(pixels)
                self._pngs[part] = changed[part] = encoded
        if self.grid.update(snap):
            self._pngs["grid"] = changed["grid"] = self.grid.png()
        return changed

    def _chart(self, kind: str, metric: str) -> MetricChart:
        chart = self._metric_charts.get((kind, metric))
        if chart is None:
            if len(self._metric_charts) >= MAX_KEPT_CHARTS:
                self._metric_charts.pop(next(iter(self._metric_charts)))
            chart = self._metric_charts[(kind, metric)] = MetricChart()
        return chart

    def png(self, part: str) -> bytes | None:
        return self._pngs[part]

    def compose(self, snap: DashboardSnapshot, metric: str | None = None) -> bytes:
        """The whole dashboard as one PNG, 1000 px wide: header, the sites' data, metric charts, durations, grid,
        cross-site."""
        self.update(snap, metric)
        rows = [header_pixels(snap)]
        if self._pixels["data"] is not None:
            rows.append(self._pixels["data"])
        rows.append(np.hstack([self._pixels["train"], self._pixels["val"]]))
        rows += [self._pixels["durations"], self.grid.rgb()]
        if self._pixels["cross_site"] is not None:
            rows.append(self._pixels["cross_site"])
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        return encode_png(np.vstack(padded))


def header_pixels(snap: DashboardSnapshot) -> np.ndarray:
    """Title; a coloured status badge with round, elapsed time and loss; the error, warnings and failures.

    Drawn with PIL in matplotlib's own DejaVu fonts: a dozen lines of text cost a millisecond or two
    this way, against tens of milliseconds through a matplotlib figure.
    """
    notes = [(f"error: {snap.error}", "#c81e36")] if snap.error else []
    notes += [(line, "#b45309") for line in warning_lines(snap)]
    notes += [(line, "#374151") for line in failure_lines(snap, limit=MAX_NOTE_LINES)]
    notes = notes[:MAX_NOTE_LINES]
    width = int(WIDTH_IN * DPI)
    image = Image.new("RGB", (width, 110 + 22 * len(notes)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((25, 30), clip(title_line(snap), 90), font=_font(19, bold=True), fill="#111827", anchor="lm")
    colour = STATUS_COLOURS.get(snap.status, MUTED)
    badge_font = _font(14, bold=True)
    left, top, right, bottom = draw.textbbox((36, 72), snap.status, font=badge_font, anchor="lm")
    draw.rounded_rectangle((left - 7, top - 5, right + 7, bottom + 5), radius=5, fill=colour)
    draw.text((36, 72), snap.status, font=badge_font, fill="white", anchor="lm")
    line = status_line(snap)
    rest = line.split(" \u00b7 ", 1)[1] if " \u00b7 " in line else ""
    draw.text((right + 22, 72), clip(rest, 110), font=_font(14.5), fill="#374151", anchor="lm")
    for i, (note, note_colour) in enumerate(notes):
        draw.text((25, 102 + 22 * i), clip(note, 150), font=_font(13), fill=note_colour, anchor="lm")
    return np.asarray(image)


@lru_cache(maxsize=8)
def _font(size_px: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else None))
    return ImageFont.truetype(path, size=size_px)


_shared = DashboardPictures()
_shared_lock = threading.Lock()


def render_png(snapshot: DashboardSnapshot | Mapping[str, Any], metric: str | None = None) -> bytes:
    """The whole dashboard of a snapshot (or its dict form) as one PNG about 1000 px wide."""
    with _shared_lock:
        return _shared.compose(as_snapshot(snapshot), metric)
