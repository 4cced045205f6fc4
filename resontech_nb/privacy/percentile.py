"""``percentile[:percentile=10,gamma=0.01]``: NVFlare's ``PercentilePrivacy`` (Shokri and Shmatikov, 2015).

Only the update's values above the ``percentile``-th percentile of its absolute values (after dividing by the
site's sample count) are sent, each clipped to ``gamma``; the rest are sent as 0. Hides small changes and bounds
large ones.
"""

from __future__ import annotations

from typing import Any

from .base import FilterKind


class Percentile(FilterKind):
    name = "percentile"
    path = "nvflare.app_common.filters.percentile_privacy.PercentilePrivacy"
    defaults = {"percentile": 10, "gamma": 0.01}

    @classmethod
    def range_problem(cls, args: dict[str, Any]) -> str:
        if not 0 <= args["percentile"] <= 100:
            return f"percentile's percentile must be between 0 and 100, got {args['percentile']}"
        if args["gamma"] <= 0:
            return f"percentile's gamma (the clip on each value) must be above 0, got {args['gamma']}"
        return ""
