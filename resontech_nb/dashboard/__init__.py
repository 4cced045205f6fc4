"""The live dashboard: status, training and validation metrics per round, the best round,
client x round participation, round durations, the cross-site heatmap.

``show_dashboard(job)`` shows it under the current cell and keeps it current; ``render_png`` and
``render_text`` draw a plain snapshot without widgets (for tests, benchmarks and scripts).
The dashboard reads only ``Job`` and its round records, never a target's internals.
Only this package imports ipywidgets, and only when widgets are shown.
"""

from __future__ import annotations

from .live import Dashboard, in_widget_frontend, show_dashboard
from .picture import DashboardPictures, render_png
from .snapshot import DashboardSnapshot, take_snapshot
from .text import render_text

__all__ = [
    "Dashboard",
    "DashboardPictures",
    "DashboardSnapshot",
    "in_widget_frontend",
    "render_png",
    "render_text",
    "show_dashboard",
    "take_snapshot",
]
