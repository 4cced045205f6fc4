"""``svt[:fraction=0.1,epsilon=0.1,noise_var=0.1,gamma=1e-5,tau=1e-6]``: NVFlare's ``SVTPrivacy``.

The sparse vector technique: a ``fraction`` of the update's values, chosen by a noisy threshold test, is sent
with Laplace noise (privacy budget ``epsilon``); the rest are sent as 0. Differential privacy for what is sent,
at a cost in accuracy.
"""

from __future__ import annotations

from typing import Any

from .base import FilterKind


class SVT(FilterKind):
    name = "svt"
    path = "nvflare.app_common.filters.svt_privacy.SVTPrivacy"
    defaults = {"fraction": 0.1, "epsilon": 0.1, "noise_var": 0.1, "gamma": 1e-5, "tau": 1e-6}

    @classmethod
    def range_problem(cls, args: dict[str, Any]) -> str:
        if not 0 < args["fraction"] <= 1:
            return f"svt's fraction (the share of values sent) must be above 0 and at most 1, got {args['fraction']}"
        for key in ("epsilon", "noise_var", "gamma"):
            if args[key] <= 0:
                return f"svt's {key} must be above 0, got {args[key]}"
        if args["tau"] < 0:
            return f"svt's tau must be >= 0, got {args['tau']}"
        return ""
