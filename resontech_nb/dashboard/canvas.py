"""A reusable matplotlib figure that redraws only its data: the speed behind the live dashboard.

Most of a matplotlib redraw goes into text: titles, tick labels, legends. A ``BlitFigure`` draws
those once as a background (again only when its ``key`` changes: other limits, other legend) and
then, for each update, restores that background and draws just the data artists on it (blitting
on the Agg canvas). No pyplot: plain ``Figure`` objects, safe off the main thread, never touching
the notebook's inline backend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

DPI = 100
TEXT = "#1f2937"
MUTED = "#6b7280"
GRID_LINE = "#e5e7eb"
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False, "fontsize": 8.5, "borderaxespad": 0.0}


class BlitFigure:
    """A figure of fixed size with axes placed in inches (``(left, bottom, width, height)``)."""

    def __init__(self, width_in: float, height_in: float, rects: Sequence[tuple[float, float, float, float]]) -> None:
        self.width_in, self.height_in = width_in, height_in
        self.figure = Figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")
        FigureCanvasAgg(self.figure)
        self.axes = [
            self.figure.add_axes((x / width_in, y / height_in, w / width_in, h / height_in)) for x, y, w, h in rects
        ]
        self._key: Any = object()
        self._background: Any = None

    def background(self, key: Any, draw: Callable[[Figure, list[Any]], None]) -> bool:
        """Make sure the background drawn by ``draw(figure, axes)`` for ``key`` is current; True if redrawn."""
        if key == self._key:
            return False
        for text in list(self.figure.texts):
            text.remove()
        for ax in self.axes:
            ax.clear()
        draw(self.figure, self.axes)
        self.figure.canvas.draw()
        self._background = self.figure.canvas.copy_from_bbox(self.figure.bbox)
        self._key = key
        return True

    def render(self, artists: Iterable[Any]) -> np.ndarray:
        """The background with ``artists`` (already added to their axes) drawn on it, as RGB pixels.

        The artists are removed again afterwards, so the next update starts from the bare background.
        """
        canvas = self.figure.canvas
        canvas.restore_region(self._background)
        artists = list(artists)
        for artist in artists:
            artist.axes.draw_artist(artist) if artist.axes is not None else artist.draw(canvas.get_renderer())
        pixels = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])  # one copy, RGB
        for artist in artists:
            artist.remove()
        return pixels

    def pixel_box(self, ax: Any) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` rows and columns of ``ax``'s area in the pixel buffer."""
        box = ax.get_window_extent()
        height = int(round(self.height_in * DPI))
        return height - int(round(box.y1)), height - int(round(box.y0)), int(round(box.x0)), int(round(box.x1))


def nice_limits(values: Iterable[np.ndarray], *, nbins: int = 5, floor_zero: bool = False) -> tuple[float, float]:
    """Round-number axis limits around the finite ``values``: they stay the same while the data moves a little,
    so most updates keep the background (ticks included) and only blit the data."""
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return (0.0, 1.0)
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    if floor_zero:
        lo = min(lo, 0.0)
    if math.isclose(lo, hi):
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    ticks = MaxNLocator(nbins=nbins).tick_values(lo, hi)
    return float(max((t for t in ticks if t <= lo), default=lo)), float(min((t for t in ticks if t >= hi), default=hi))


def style_axes(ax: Any, title: str, total_rounds: int, *, xlabel: bool = True) -> None:
    """Title, light spines, x axis over rounds 1..N (integer ticks)."""
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold", color=TEXT, pad=6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5, colors="#374151")
    ax.set_xlim(0.5, total_rounds + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=min(total_rounds, 10), integer=True, min_n_ticks=1))
    if xlabel:
        ax.set_xlabel("round", fontsize=9)


def placeholder(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=10.5)
    ax.set_yticks([])


PALETTE_COLOURS = 128


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of RGB pixels, as a 128-colour palette image with low zlib effort.

    The pictures are flat colours plus antialiasing: a palette keeps them looking the same at a third
    of the bytes, and encodes in half the time of a true-colour PNG (whose row filters dominate).
    """
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    image.quantize(PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
