"""Matplotlib pictures of a snapshot, rendered straight to PNG bytes with the Agg canvas.

No pyplot: figures are plain ``Figure`` objects on an Agg canvas, so nothing here touches the
notebook's inline backend, flickers or wipes other output, and it works from a background thread.
Figures are kept and reused between redraws (one per size), guarded by a lock.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import AutoLocator, MaxNLocator, ScalarFormatter
from PIL import Image

from ..records import FAILED
from .snapshot import CELL_NAMES, DashboardSnapshot, as_snapshot
from .text import status_line, title_line

DPI = 100
PNG_WIDTH_IN = 10.0  # the composed picture: 1000 px wide
MAX_LEGEND_CLIENTS = 8

# Grid cell colours, in CELL_* code order: not run yet, took part, failed, absent.
CELL_COLOURS = ("#f3f4f6", "#3f9c5a", "#d7263d", "#b9bec7")
STATUS_COLOURS = {
    "SUBMITTED": "#6b7280",
    "RUNNING": "#1d6fd8",
    "FINISHED": "#2f8a4c",
    "FAILED": "#c81e36",
    "ABORTED": "#c46a0b",
}
GLOBAL_COLOUR = "#111827"
BAR_COLOUR = "#5b8def"
BAR_FAILED_COLOUR = "#e07b39"
MUTED = "#6b7280"

_CELL_CMAP = ListedColormap(list(CELL_COLOURS))
_lock = threading.Lock()
_boards: dict[tuple, tuple] = {}


def _board(kind: str, width_in: float, rects: tuple[tuple[float, float, float, float], ...], height_in: float) -> tuple:
    """A cached figure with its axes (placed in inches), emptied of the previous drawing.

    Keeping the axes (rather than clearing the figure) keeps their ticks and spines, which is
    where most of matplotlib's redraw time would otherwise go.
    """
    key = (kind, round(width_in, 2), round(height_in, 2))
    board = _boards.get(key)
    if board is None:
        same_kind = [k for k in _boards if k[0] == kind]
        if len(same_kind) > 4:  # the client count rarely changes; keep the cache small
            for old in same_kind:
                del _boards[old]
        fig = Figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")
        FigureCanvasAgg(fig)
        axes = tuple(
            fig.add_axes((left / width_in, bottom / height_in, w / width_in, h / height_in))
            for left, bottom, w, h in rects
        )
        board = _boards[key] = (fig, axes)
    fig, axes = board
    for text in list(fig.texts):
        text.remove()
    for ax in axes:
        _empty(ax)
    return board


def _empty(ax: Any) -> None:
    """Remove the data artists and legend of an axes, keeping its ticks and styling."""
    for artist in [*ax.lines, *ax.images, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.grid(False, which="both")
    ax.set_xticks([], minor=True)
    ax.set_yticks([], minor=True)
    ax.yaxis.set_major_locator(AutoLocator())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylim(auto=True)
    ax.relim()


def _round_axis(ax: Any, snap: DashboardSnapshot, label: bool = True) -> None:
    ax.set_xlim(0.5, snap.total_rounds + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=min(snap.total_rounds, 20), integer=True, min_n_ticks=1))
    if label:
        ax.set_xlabel("round")


def _style(ax: Any, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold", color="#1f2937", pad=6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5, colors="#374151")


# -- the three charts -------------------------------------------------------------------
def draw_loss(ax: Any, snap: DashboardSnapshot) -> None:
    """Global weighted loss (thick, dark) and each client's loss (thin, coloured), rounds from 1."""
    _style(ax, "Loss per round")
    _round_axis(ax, snap)
    ax.set_ylabel("loss", fontsize=9)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    if not snap.rounds:
        ax.text(
            0.5,
            0.5,
            "waiting for the first round\u2026",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=MUTED,
            fontsize=11,
        )
        ax.set_yticks([])
        return
    x = np.array([r.round + 1 for r in snap.rounds], dtype=float)
    clients = snap.all_clients
    many = len(clients) > MAX_LEGEND_CLIENTS
    markers = len(x) <= 30
    palette = matplotlib.colormaps["tab10" if len(clients) <= 10 else "tab20"].colors
    handles = []
    for i, name in enumerate(clients):
        y = np.array(
            [c.loss if (c := r.clients.get(name)) is not None and c.loss is not None else np.nan for r in snap.rounds],
            dtype=float,
        )
        if np.all(np.isnan(y)):
            continue
        (line,) = ax.plot(
            x,
            y,
            color=palette[i % len(palette)],
            linewidth=0.9 if many else 1.4,
            alpha=0.55 if many else 0.9,
            marker="o" if markers and not many else None,
            markersize=3.5,
            label=name,
        )
        if len(handles) < MAX_LEGEND_CLIENTS:
            handles.append(line)
    g = np.array([np.nan if r.global_loss is None else r.global_loss for r in snap.rounds], dtype=float)
    (global_line,) = ax.plot(
        x,
        g,
        color=GLOBAL_COLOUR,
        linewidth=2.6,
        marker="o" if markers else None,
        markersize=5,
        label="global (weighted)",
        zorder=5,
    )
    legend_handles = [global_line, *handles]
    hidden = len(clients) - len(handles)
    if hidden > 0:
        legend_handles.append(Line2D([], [], color="none", label=f"+ {hidden} more clients"))
    ax.legend(
        handles=legend_handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8.5,
        borderaxespad=0.0,
    )


def draw_participation(ax: Any, snap: DashboardSnapshot) -> None:
    """Client x round grid: took part / failed / absent / not run yet, with a legend."""
    _style(ax, "Participation (client \u00d7 round)")
    clients, grid = snap.participation()
    n_rounds = snap.total_rounds
    if not clients:
        ax.text(0.5, 0.5, "no clients known yet", transform=ax.transAxes, ha="center", va="center", color=MUTED)
        ax.set_yticks([])
        _round_axis(ax, snap)
        return
    data = np.array(grid, dtype=float)
    ax.imshow(
        data,
        cmap=_CELL_CMAP,
        vmin=-0.5,
        vmax=len(CELL_COLOURS) - 0.5,
        aspect="auto",
        interpolation="nearest",
        extent=(0.5, n_rounds + 0.5, len(clients) - 0.5, -0.5),
    )
    _round_axis(ax, snap)
    step = max(1, int(np.ceil(len(clients) / 20)))
    rows = list(range(0, len(clients), step))
    ax.set_yticks(rows)
    ax.set_yticklabels([_short(clients[i]) for i in rows], fontsize=8 if len(clients) <= 20 else 7)
    if n_rounds <= 40 and len(clients) <= 30:  # separators between cells while they are big enough to see
        ax.set_xticks(np.arange(1.5, n_rounds, 1.0), minor=True)
        ax.set_yticks(np.arange(0.5, len(clients) - 1, 1.0), minor=True)
        ax.grid(True, which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    legend = [
        Patch(facecolor=CELL_COLOURS[code], edgecolor="#9ca3af", linewidth=0.5, label=label)
        for code, label in ((1, CELL_NAMES[1]), (2, CELL_NAMES[2]), (3, CELL_NAMES[3]), (0, CELL_NAMES[0]))
    ]
    ax.legend(
        handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, borderaxespad=0.0
    )


def draw_durations(ax: Any, snap: DashboardSnapshot) -> None:
    """Seconds per finished round; rounds where a client failed stand out."""
    _style(ax, "Round duration")
    _round_axis(ax, snap)
    ax.set_ylabel("seconds", fontsize=9)
    ax.grid(True, axis="y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    timed = [r for r in snap.rounds if r.duration_s is not None]
    if not timed:
        ax.text(0.5, 0.5, "no timed round yet", transform=ax.transAxes, ha="center", va="center", color=MUTED)
        ax.set_yticks([])
        return
    x = [r.round + 1 for r in timed]
    heights = [max(0.0, r.duration_s or 0.0) for r in timed]
    failed = [any(c.status == FAILED for c in r.clients.values()) for r in timed]
    colours = [BAR_FAILED_COLOUR if f else BAR_COLOUR for f in failed]
    half = (0.75 if len(x) < 60 else 0.9) / 2
    # One collection instead of one patch per bar: a hundred bars cost one artist.
    boxes = [((r - half, 0), (r - half, h), (r + half, h), (r + half, 0)) for r, h in zip(x, heights, strict=True)]
    bars = PolyCollection(boxes, facecolors=colours, linewidths=0)
    ax.add_collection(bars, autolim=True)
    ax.set_ylim(0, max(heights) * 1.08 or 1.0)
    handles = [Patch(color=BAR_COLOUR, label="round")]
    if any(failed):
        handles.append(Patch(color=BAR_FAILED_COLOUR, label="a client failed"))
    mean = sum(heights) / len(heights)
    handles.append(Line2D([], [], color="none", label=f"mean {mean:.1f} s"))
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, borderaxespad=0.0
    )


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


# -- whole pictures ---------------------------------------------------------------------
LEFT_IN = 1.15
RIGHT_IN = 1.95  # room for the legends, so they never cover data


def _grid_height(n_clients: int) -> float:
    return float(min(4.6, max(0.9, 0.24 * n_clients + 0.25)))


def render_pictures(snapshot: DashboardSnapshot | Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Draw the dashboard once; return ``(whole picture, charts only)`` as PNG bytes.

    The whole picture (about 1000 px wide) is the static fallback kept in the notebook: title,
    status, loss per round, round durations, participation grid. The charts-only image is the
    loss and duration part of the same drawing, cropped, for the widget (which shows the grid
    as HTML). One drawing for both halves the redraw time.
    """
    snap = as_snapshot(snapshot)
    grid_h = _grid_height(len(snap.all_clients))
    loss_h, dur_h = 3.0, 1.5
    header, gap, bottom = 1.35, 0.8, 0.55
    height = header + loss_h + gap + dur_h + gap + grid_h + bottom
    width = PNG_WIDTH_IN
    plot_w = width - LEFT_IN - RIGHT_IN
    loss_y = height - header - loss_h
    dur_y = loss_y - gap - dur_h
    grid_y = dur_y - gap - grid_h
    rects = ((LEFT_IN, loss_y, plot_w, loss_h), (LEFT_IN, dur_y, plot_w, dur_h), (LEFT_IN, grid_y, plot_w, grid_h))
    with _lock:
        fig, (loss_ax, dur_ax, grid_ax) = _board("dashboard", width, rects, height)
        _draw_header(fig, snap, width, height)
        draw_loss(loss_ax, snap)
        draw_durations(dur_ax, snap)
        draw_participation(grid_ax, snap)
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        charts_top = int(0.98 * DPI)  # just under the status line, above the loss chart's title
        charts_bottom = int((height - dur_y + 0.55) * DPI)
        return _encode(pixels), _encode(pixels[charts_top:charts_bottom])


def render_png(snapshot: DashboardSnapshot | Mapping[str, Any]) -> bytes:
    """The whole dashboard as one PNG (about 1000 px wide): title, status, loss, durations, participation."""
    return render_pictures(snapshot)[0]


def render_charts_png(snapshot: DashboardSnapshot | Mapping[str, Any]) -> bytes:
    """Loss per round above round durations, as the widget shows them (about 1000 px wide)."""
    return render_pictures(snapshot)[1]


def _encode(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Low zlib effort: the picture is mostly flat colour, so this costs little size and saves time.
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _draw_header(fig: Figure, snap: DashboardSnapshot, width: float, height: float) -> None:
    """Title line, then a coloured status badge followed by round, elapsed time and loss."""
    x0 = 0.25 / width
    fig.text(
        x0, 1 - 0.35 / height, _clip(title_line(snap), 90), fontsize=14, fontweight="bold", color="#111827", va="center"
    )
    colour = STATUS_COLOURS.get(snap.status, MUTED)
    y = 1 - 0.78 / height
    badge = fig.text(
        x0 + 0.05 / width,
        y,
        snap.status,
        fontsize=10,
        fontweight="bold",
        color="white",
        va="center",
        bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": colour},
    )
    line = status_line(snap)
    rest = line.split(" \u00b7 ", 1)[1] if " \u00b7 " in line else ""
    if snap.error:
        rest += f" \u00b7 error: {snap.error}"
    # Place the rest just after the badge, wherever the status word ends.
    badge_right = badge.get_window_extent(renderer=fig.canvas.get_renderer()).x1 / (width * DPI)
    fig.text(badge_right + 0.2 / width, y, _clip(rest, 110), fontsize=10.5, color="#374151", va="center")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
