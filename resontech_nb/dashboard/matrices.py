"""The two matrix pictures: the client x round participation grid and the cross-site evaluation heatmap.

The grid is one image: its frame (title, client names, round ticks, legend) is drawn by matplotlib
once per client list and round count, and its cells are painted straight into the pixels with
numpy on every update, so 50 clients x 100 rounds cost about a millisecond.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch
from PIL import Image

from .canvas import LEGEND, MUTED, BlitFigure, clip, placeholder, style_axes
from .series import lower_is_better
from .snapshot import CELL_NAMES, DashboardSnapshot

# Grid cell colours, in CELL_* code order: not run yet, took part, failed, absent.
CELL_COLOURS = ("#f3f4f6", "#3f9c5a", "#d7263d", "#b9bec7")
_CELL_RGB = (np.array([to_rgb(c) for c in CELL_COLOURS]) * 255).round().astype(np.uint8)
_SEPARATOR = np.array([255, 255, 255], dtype=np.uint8)
GRID_WIDTH_IN = 10.0
GRID_LEFT_IN = 1.15
GRID_PLOT_IN = 6.9
MIN_SEPARATED_CELL_PX = 6  # cells at least this big get a white line between them


def grid_height(n_clients: int) -> float:
    return float(min(4.6, max(0.9, 0.24 * n_clients + 0.25)))


class ParticipationChart:
    """Client x round grid: took part / failed / absent / not run yet.

    Kept as a palette image: the frame is quantized once per background, the cells are palette
    indices of their own, so an update is an index fill and a one-byte-a-pixel PNG encode.
    """

    def __init__(self) -> None:
        self._boards: dict[int, BlitFigure] = {}
        self._key: Any = None
        self._frame_key: Any = None
        self._frame: np.ndarray | None = None  # palette indices of the drawn frame
        self._palette: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
        self._indices: np.ndarray | None = None
        self._pixels: np.ndarray | None = None

    def _board(self, n_clients: int) -> BlitFigure:
        height = grid_height(n_clients) + 0.9
        size = int(round(height * 100))
        if size not in self._boards:
            if len(self._boards) > 3:  # the client count rarely changes; keep a few sizes at most
                self._boards.clear()
            rect = (GRID_LEFT_IN, 0.45, GRID_PLOT_IN, grid_height(n_clients))
            self._boards[size] = BlitFigure(GRID_WIDTH_IN, height, [rect])
        return self._boards[size]

    def update(self, snap: DashboardSnapshot) -> bool:
        """Bring the grid up to date with ``snap``; True if it changed."""
        clients = snap.all_clients
        codes = snap.participation_codes()
        key = (tuple(clients), snap.total_rounds, codes.tobytes())
        if key == self._key and self._indices is not None:
            return False
        board = self._board(len(clients))
        frame_key = (tuple(clients), snap.total_rounds, id(board))
        if board.background(frame_key[:2], lambda fig, axes: _draw_frame(axes[0], clients, snap)) or (
            frame_key != self._frame_key
        ):
            self._frame, self._palette = _quantized(board.render([]))
            self._frame_key = frame_key
        assert self._frame is not None
        indices = self._frame.copy()
        if clients:
            top, bottom, left, right = board.pixel_box(board.axes[0])
            indices[top:bottom, left:right] = cell_indices(codes, bottom - top, right - left)
        self._indices, self._key = indices, key
        self._pixels = None  # RGB only when asked for (the composed picture): the widget gets the palette PNG
        return True

    def rgb(self) -> np.ndarray:
        """The current grid as RGB pixels (call after ``update``)."""
        assert self._indices is not None
        if self._pixels is None:
            self._pixels = np.asarray(self._palette_image().convert("RGB"))
        return self._pixels

    def _palette_image(self) -> Image.Image:
        assert self._indices is not None
        image = Image.fromarray(self._indices, mode="P")
        image.putpalette(self._palette.tobytes())
        return image

    def png(self) -> bytes:
        """The current grid as a palette PNG (call after ``pixels``)."""
        buffer = io.BytesIO()
        self._palette_image().save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


CELL_INDEX = 250  # palette slots 250-253: the cell colours; 254: the separator
_SEPARATOR_INDEX = CELL_INDEX + len(CELL_COLOURS)


def _quantized(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, palette)`` of an RGB frame in at most 250 colours, with the cell colours appended."""
    image = Image.fromarray(rgb).quantize(CELL_INDEX, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette = np.zeros((256, 3), dtype=np.uint8)
    used = np.asarray(image.getpalette()[: 3 * CELL_INDEX], dtype=np.uint8).reshape(-1, 3)
    palette[: len(used)] = used
    palette[CELL_INDEX:_SEPARATOR_INDEX] = _CELL_RGB
    palette[_SEPARATOR_INDEX] = _SEPARATOR
    return np.asarray(image, dtype=np.uint8), palette


def cell_indices(codes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Palette indices of a ``height`` x ``width`` image of the cell ``codes``, with separators when cells are big."""
    n_rows, n_cols = codes.shape
    rows = np.arange(height) * n_rows // height
    cols = np.arange(width) * n_cols // width
    cells = (codes + np.uint8(CELL_INDEX))[rows][:, cols]
    if height >= MIN_SEPARATED_CELL_PX * n_rows:
        cells[np.flatnonzero(np.diff(rows)) + 1, :] = _SEPARATOR_INDEX
    if width >= MIN_SEPARATED_CELL_PX * n_cols:
        cells[:, np.flatnonzero(np.diff(cols)) + 1] = _SEPARATOR_INDEX
    return cells


def paint_cells(codes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The same image in RGB."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[CELL_INDEX:_SEPARATOR_INDEX] = _CELL_RGB
    palette[_SEPARATOR_INDEX] = _SEPARATOR
    return palette[cell_indices(codes, height, width)]


def _draw_frame(ax: Any, clients: list[str], snap: DashboardSnapshot) -> None:
    style_axes(ax, "Participation (client \u00d7 round)", snap.total_rounds)
    if not clients:
        placeholder(ax, "no clients known yet")
        return
    ax.set_ylim(len(clients) - 0.5, -0.5)
    step = max(1, int(np.ceil(len(clients) / 20)))
    rows = list(range(0, len(clients), step))
    ax.set_yticks(rows)
    ax.set_yticklabels([clip(clients[i], 14) for i in rows], fontsize=8 if len(clients) <= 20 else 7)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    legend = [
        Patch(facecolor=CELL_COLOURS[code], edgecolor="#9ca3af", linewidth=0.5, label=CELL_NAMES[code])
        for code in (1, 2, 3, 0)
    ]
    ax.legend(handles=legend, **LEGEND)


# -- cross-site evaluation ------------------------------------------------------------------
def cross_site_metric(cross_site: Mapping[str, Mapping[str, Mapping[str, float]]], wanted: str) -> str | None:
    """``wanted`` if any cross-site result has it, else the first metric there is (None when empty)."""
    names = sorted({m for sites in cross_site.values() for metrics in sites.values() for m in metrics})
    if not names:
        return None
    return wanted if wanted in names else ("loss" if "loss" in names else names[0])


def cross_site_matrix(
    cross_site: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str
) -> tuple[list[str], list[str], np.ndarray]:
    """``(models, sites, values)``: one row per model, one column per site, NaN where nothing was reported."""
    models = sorted(cross_site)
    sites = sorted({site for per_site in cross_site.values() for site in per_site})
    values = np.full((len(models), len(sites)), np.nan)
    for i, model in enumerate(models):
        for j, site in enumerate(sites):
            value = cross_site[model].get(site, {}).get(metric)
            if value is not None:
                values[i, j] = value
    return models, sites, values


class CrossSiteChart:
    """Heatmap of one metric: each model (rows: the final global model, each site's local model) on each site's data."""

    def __init__(self) -> None:
        self._key: Any = None
        self._pixels: np.ndarray | None = None

    def pixels(self, snap: DashboardSnapshot, wanted: str) -> tuple[np.ndarray | None, bool]:
        metric = cross_site_metric(snap.cross_site, wanted)
        if metric is None:
            changed = self._pixels is not None
            self._pixels, self._key = None, None
            return None, changed
        models, sites, values = cross_site_matrix(snap.cross_site, metric)
        key = (metric, tuple(models), tuple(sites), values.tobytes())
        if key == self._key and self._pixels is not None:
            return self._pixels, False
        height = min(6.0, 1.3 + 0.42 * len(models))
        board = BlitFigure(GRID_WIDTH_IN, height, [(2.3, 0.75, min(5.75, 0.9 * len(sites) + 0.6), height - 1.15)])
        board.background(key, lambda fig, axes: _draw_heatmap(fig, axes[0], metric, models, sites, values))
        self._pixels, self._key = board.render([]), key
        return self._pixels, True


def _draw_heatmap(fig: Any, ax: Any, metric: str, models: list[str], sites: list[str], values: np.ndarray) -> None:
    ax.set_title(f"Cross-site evaluation: {metric} (model \u00d7 site data)", loc="left", fontsize=11,
                 fontweight="bold", color="#1f2937", pad=6)  # fmt: skip
    cmap = matplotlib.colormaps["viridis_r" if lower_is_better(metric) else "viridis"]
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")  # fmt: skip
    ax.set_xticks(range(len(sites)))
    ax.set_xticklabels([clip(s, 12) for s in sites], fontsize=8.5, rotation=30 if len(sites) > 6 else 0)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels([clip(m, 26) for m in models], fontsize=8.5)
    ax.set_xlabel("data of site", fontsize=9)
    if values.size <= 150:
        middle = (vmin + vmax) / 2
        better_high = not lower_is_better(metric)
        for (i, j), value in np.ndenumerate(values):
            text = "\u2014" if not np.isfinite(value) else f"{value:.3g}"
            light = np.isfinite(value) and ((value < middle) == better_high)
            ax.text(j, i, text, ha="center", va="center", fontsize=8.5, color="white" if light else "#111827")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=8)
    bar.set_label(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)", fontsize=8.5,
                  color=MUTED)  # fmt: skip


class DataChart:
    """Heatmap of the sites' data before training: rows per site and class, the skew verdict as its subtitle."""

    def __init__(self) -> None:
        self._key: Any = None
        self._pixels: np.ndarray | None = None

    def pixels(self, snap: DashboardSnapshot) -> tuple[np.ndarray | None, bool]:
        found = snap.data_counts
        if found is None:
            changed = self._pixels is not None
            self._pixels, self._key = None, None
            return None, changed
        sites, values = found
        key = (tuple(sites), values.tobytes(), values.shape, snap.data_verdict)
        if key == self._key and self._pixels is not None:
            return self._pixels, False
        height = min(5.0, 1.45 + 0.3 * len(sites))
        classes = values.shape[1]
        board = BlitFigure(GRID_WIDTH_IN, height, [(GRID_LEFT_IN, 0.55, min(7.6, 0.45 * classes + 0.8), height - 1.2)])
        board.background(key, lambda fig, axes: _draw_data(fig, axes[0], sites, values, snap.data_verdict))
        self._pixels, self._key = board.render([]), key
        return self._pixels, True


def _draw_data(fig: Any, ax: Any, sites: list[str], values: np.ndarray, verdict: str) -> None:
    ax.set_title("Data per site before training: rows per class", loc="left", fontsize=11, fontweight="bold",
                 color="#1f2937", pad=18)  # fmt: skip
    if verdict:
        ax.text(0, 1.02, clip(verdict, 150), transform=ax.transAxes, fontsize=8, color=MUTED, va="bottom")
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap=matplotlib.colormaps["Blues"], vmin=0, vmax=max(top, 1.0),
                      aspect="auto", interpolation="nearest")  # fmt: skip
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels([str(c) for c in range(values.shape[1])], fontsize=8)
    ax.set_yticks(range(len(sites)))
    ax.set_yticklabels([clip(s, 14) for s in sites], fontsize=8.5)
    ax.set_xlabel("class", fontsize=9)
    if values.size <= 300:
        for (i, j), value in np.ndenumerate(values):
            text = "\u2014" if not np.isfinite(value) else f"{value:.0f}"
            light = np.isfinite(value) and value > top / 2
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color="white" if light else "#111827")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=8)
    bar.set_label("rows (\u2014: withheld)", fontsize=8.5, color=MUTED)
