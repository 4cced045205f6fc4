"""The dashboard's line and bar charts: one metric per round (training or validation), round durations.

Each chart owns a ``BlitFigure`` and remembers what it drew last: ``pixels()`` returns the cached
picture when its data did not change, blits the data onto the kept background when only the data
changed, and redraws the background only when limits or legend change.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ..records.rounds import FAILED
from .canvas import GRID_LINE, LEGEND, BlitFigure, nice_limits, placeholder, style_axes
from .series import KIND_TITLES, VALIDATION, MetricSeries
from .snapshot import DashboardSnapshot

MAX_CLIENT_LINES = 8  # beyond this, clients are drawn as a band (their range) instead of one line each
GLOBAL_COLOUR = "#111827"
BAND_COLOUR = "#5b8def"
BEST_COLOUR = "#d4a017"
NONFINITE_COLOUR = "#d7263d"
BAR_COLOUR = "#5b8def"
BAR_FAILED_COLOUR = "#e07b39"
_BAR_RGB = (np.array(to_rgb(BAR_COLOUR)) * 255).round().astype(np.uint8)
_BAR_FAILED_RGB = (np.array(to_rgb(BAR_FAILED_COLOUR)) * 255).round().astype(np.uint8)

# Sizes in inches: two metric charts side by side make one 10-inch row, as wide as the others.
METRIC_SIZE = (5.0, 3.0)
METRIC_RECT = (0.62, 0.5, 2.9, 2.15)
DURATION_SIZE = (10.0, 1.75)
DURATION_RECT = (1.15, 0.45, 6.9, 0.95)


class MetricChart:
    """One metric over the rounds: the global value (thick) and each client's (thin) or their range."""

    def __init__(self) -> None:
        self.board = BlitFigure(*METRIC_SIZE, [METRIC_RECT])
        self._key: Any = None
        self._pixels: np.ndarray | None = None

    def pixels(self, series: MetricSeries, total_rounds: int, best_round: int | None) -> tuple[np.ndarray, bool]:
        """The chart as RGB pixels, and whether it changed since the last call."""
        key = (series.key(), total_rounds, best_round)
        if key == self._key and self._pixels is not None:
            return self._pixels, False
        ax = self.board.axes[0]
        many = len(series.clients) > MAX_CLIENT_LINES
        shown = [i for i in range(len(series.clients)) if np.isfinite(series.per_client[i]).any()]
        nonfinite = series.nonfinite_rounds
        limits = nice_limits([series.global_values, series.per_client])
        legend = (many, tuple(series.clients[i] for i in shown) if not many else len(shown) > 1)
        background = (series.metric, series.kind, total_rounds, series.empty, limits, legend,
                      best_round is not None, bool(nonfinite))  # fmt: skip
        self.board.background(
            background,
            lambda fig, axes: self._draw_frame(axes[0], series, total_rounds, limits, shown, best_round, nonfinite),
        )
        self._pixels = self.board.render(self._data_artists(ax, series, shown, best_round, nonfinite))
        self._key = key
        return self._pixels, True

    @staticmethod
    def _palette(n: int) -> tuple:
        return matplotlib.colormaps["tab10"].colors[: max(n, 1)]

    def _draw_frame(self, ax, series, total_rounds, limits, shown, best_round, nonfinite) -> None:  # noqa: ANN001
        title = f"{KIND_TITLES[series.kind]} {series.metric}"
        style_axes(ax, title, total_rounds)
        if series.empty:
            what = "validation" if series.kind == VALIDATION else "training"
            placeholder(ax, f"no {what} {series.metric} recorded yet")
            return
        ax.set_ylim(*limits)
        ax.grid(True, color=GRID_LINE, linewidth=0.8)
        ax.set_axisbelow(True)
        handles = [Line2D([], [], color=GLOBAL_COLOUR, linewidth=2.4, label="global")]
        if len(series.clients) > MAX_CLIENT_LINES:
            if len(shown) > 1:
                handles.append(Patch(color=BAND_COLOUR, alpha=0.25, label=f"range of {len(shown)} clients"))
                handles.append(Patch(color=BAND_COLOUR, alpha=0.5, label="middle half"))
        else:
            palette = self._palette(len(series.clients))
            handles += [Line2D([], [], color=palette[i], linewidth=1.3, label=series.clients[i]) for i in shown]
        if best_round is not None:
            handles.append(Line2D([], [], color=BEST_COLOUR, marker="*", markersize=10, linestyle="--",
                                  label=f"best round {best_round + 1}"))  # fmt: skip
        if nonfinite:
            handles.append(Line2D([], [], color=NONFINITE_COLOUR, marker="X", linestyle="none", label="not finite"))
        ax.legend(handles=handles, **{**LEGEND, "fontsize": 8})

    def _data_artists(self, ax, series: MetricSeries, shown, best_round, nonfinite) -> list:  # noqa: ANN001
        if series.empty:
            return []
        x = series.x
        artists: list = []
        markers = len(x) <= 30
        if len(series.clients) > MAX_CLIENT_LINES:
            if len(shown) > 1:
                lo, q1, q3, hi = column_quantiles(series.per_client[shown], (0.0, 0.25, 0.75, 1.0))
                artists.append(band(ax, x, lo, hi, alpha=0.25))
                artists.append(band(ax, x, q1, q3, alpha=0.5))
        else:
            palette = self._palette(len(series.clients))
            for i in shown:
                (line,) = ax.plot(x, series.per_client[i], color=palette[i], linewidth=1.3, alpha=0.9,
                                  marker="o" if markers else None, markersize=3)  # fmt: skip
                artists.append(line)
        values = np.where(np.isfinite(series.global_values), series.global_values, np.nan)
        (line,) = ax.plot(x, values, color=GLOBAL_COLOUR, linewidth=2.4, marker="o" if markers else None,
                          markersize=4.5, zorder=5)  # fmt: skip
        artists.append(line)
        if best_round is not None:
            artists.append(ax.axvline(best_round + 1, color=BEST_COLOUR, linestyle="--", linewidth=1.4, zorder=4))
            at = np.flatnonzero(x == best_round + 1)
            if at.size and np.isfinite(values[at[0]]):
                (star,) = ax.plot([best_round + 1], [values[at[0]]], marker="*", markersize=15, color=BEST_COLOUR,
                                  markeredgecolor=GLOBAL_COLOUR, markeredgewidth=0.6, zorder=6)  # fmt: skip
                artists.append(star)
        if nonfinite:
            top = blended_transform_factory(ax.transData, ax.transAxes)
            (marks,) = ax.plot(nonfinite, [0.95] * len(nonfinite), transform=top, marker="X", markersize=9,
                               color=NONFINITE_COLOUR, linestyle="none", clip_on=False, zorder=7)  # fmt: skip
            artists.append(marks)
        return artists


def band(ax: Any, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float) -> PolyCollection:
    """The area between two curves as one polygon (rounds without values are bridged): cheaper than fill_between."""
    keep = np.isfinite(lower) & np.isfinite(upper)
    xs = x[keep]
    outline = np.concatenate([np.column_stack([xs, lower[keep]]), np.column_stack([xs[::-1], upper[keep][::-1]])])
    polygon = PolyCollection([outline], facecolors=[BAND_COLOUR], alpha=alpha, linewidths=0)
    ax.add_collection(polygon, autolim=False)
    return polygon


def column_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Per column, the nearest-rank quantiles of the finite values (NaN for a column without any).

    One sort for all columns and quantiles: ``np.nanpercentile`` loops over columns in Python.
    """
    ordered = np.sort(values, axis=0)  # NaN sorts last
    count = np.isfinite(values).sum(axis=0)
    cols = np.arange(values.shape[1])
    out = []
    for q in qs:
        rank = np.clip(np.round((count - 1) * q).astype(int), 0, max(values.shape[0] - 1, 0))
        out.append(np.where(count > 0, ordered[rank, cols], np.nan))
    return out


class DurationChart:
    """Seconds per finished round as bars; rounds where a client failed stand out; the mean beside."""

    def __init__(self) -> None:
        self.board = BlitFigure(*DURATION_SIZE, [DURATION_RECT])
        self._key: Any = None
        self._pixels: np.ndarray | None = None

    def pixels(self, snap: DashboardSnapshot) -> tuple[np.ndarray, bool]:
        timed = [r for r in snap.rounds if r.duration_s is not None]
        x = np.array([r.round + 1 for r in timed], dtype=float)
        heights = np.array([max(0.0, r.duration_s or 0.0) for r in timed], dtype=float)
        failed = np.array([any(c.status == FAILED for c in r.clients.values()) for r in timed], dtype=bool)
        key = (snap.total_rounds, x.tobytes(), heights.tobytes(), failed.tobytes())
        if key == self._key and self._pixels is not None:
            return self._pixels, False
        ax = self.board.axes[0]
        limits = nice_limits([heights], nbins=3, floor_zero=True) if timed else (0.0, 1.0)
        background = (snap.total_rounds, bool(timed), limits, bool(failed.any()))
        self.board.background(background, lambda fig, axes: self._draw_frame(axes[0], snap, bool(timed), limits,
                                                                               bool(failed.any())))  # fmt: skip
        artists = []
        if timed:
            mean = ax.text(1.01, 0.0, f"mean {heights.mean():.1f} s", transform=ax.transAxes, fontsize=8.5,
                           color="#374151", va="bottom")  # fmt: skip
            artists = [mean]
        pixels = self.board.render(artists)
        if timed:
            self._paint_bars(pixels, ax, x, heights, failed)
        self._pixels, self._key = pixels, key
        return pixels, True

    def _paint_bars(self, pixels: np.ndarray, ax: Any, x: np.ndarray, heights: np.ndarray, failed: np.ndarray) -> None:
        """Bars are plain rectangles: painted straight into the pixels (a hundred artists would cost far more)."""
        half = (0.75 if len(x) < 60 else 0.9) / 2
        top_y = ax.get_ylim()[1]
        corners = np.column_stack(
            [np.concatenate([x - half, x + half]), np.concatenate([np.minimum(heights, top_y), np.zeros_like(heights)])]
        )
        display = ax.transData.transform(corners)
        n, height = len(x), pixels.shape[0]
        left = np.ceil(display[:n, 0] - 0.5).astype(int)
        right = np.ceil(display[n:, 0] - 0.5).astype(int)
        top = height - np.round(display[:n, 1]).astype(int)
        bottom = height - np.round(display[n:, 1]).astype(int)
        colours = np.where(failed[:, None], _BAR_FAILED_RGB, _BAR_RGB)
        for i in range(n):
            pixels[top[i] : bottom[i], left[i] : max(right[i], left[i] + 1)] = colours[i]

    @staticmethod
    def _draw_frame(ax, snap: DashboardSnapshot, timed: bool, limits, failed: bool) -> None:  # noqa: ANN001
        style_axes(ax, "Round duration", snap.total_rounds)
        ax.set_ylabel("seconds", fontsize=9)
        if not timed:
            placeholder(ax, "no timed round yet")
            return
        ax.set_ylim(*limits)
        ax.grid(True, axis="y", color=GRID_LINE, linewidth=0.8)
        ax.set_axisbelow(True)
        handles = [Patch(color=BAR_COLOUR, label="round")]
        if failed:
            handles.append(Patch(color=BAR_FAILED_COLOUR, label="a client failed"))
        ax.legend(handles=handles, **LEGEND)
