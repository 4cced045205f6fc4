"""The reference ResonTech platform: the REST API the ``resontech`` target speaks, run for real.

``resontech-nb serve`` starts it; ``PlatformServer`` starts it from Python (tests, notebooks).
"""

from __future__ import annotations

from .server import PlatformServer

__all__ = ["PlatformServer"]
