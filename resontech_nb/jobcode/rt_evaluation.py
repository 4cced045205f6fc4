"""Server side: the best global model by a validation metric, and the cross-site evaluation matrix.

Used by the round recorder (``rt_recorder.py``); writes ``<run dir>/evaluation.json``::

    {"select_metric": "accuracy", "higher_is_better": true, "best_round": 3, "best_value": 0.91,
     "cross_site": {"global": {"site-1": {"loss": 0.2}}, "site-1": {"site-2": {...}}}, "error": null}

and keeps the best global model as ``<run dir>/models/best_model.pt``. Plain NVFlare + torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import rt_files
import torch
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

EVALUATION_FILE = "evaluation.json"
SERVER_MODEL_PREFIX = "SRV_"
GLOBAL_MODEL_NAME = "global"


def model_display_name(owner: str) -> str:
    """NVFlare's ``SRV_FL_global_model`` is the final global model; other owners are site names."""
    return GLOBAL_MODEL_NAME if owner.startswith(SERVER_MODEL_PREFIX) else owner


class Evaluation:
    def __init__(self, run_dir: str, select_metric: str = "", higher_is_better: bool = True) -> None:
        self.run_dir = run_dir
        self.select_metric = select_metric
        self.higher_is_better = higher_is_better
        self.best_round: int | None = None
        self.best_value: float | None = None
        self.cross_site: dict[str, dict[str, dict[str, float]]] = {}
        self.metrics_seen: set[str] = set()
        self.error: str | None = None

    def consider(self, round_number: int, validation: dict[str, float], fl_ctx: FLContext) -> None:
        """Keep the global model of ``round_number`` if its validation beats the best so far.

        Called while that model is still the current global model (before the next aggregation).
        """
        self.metrics_seen.update(validation)
        if not self.select_metric or self.select_metric not in validation:
            return
        value = validation[self.select_metric]
        if not math.isfinite(value):
            return
        better = (
            self.best_value is None
            or (value > self.best_value if self.higher_is_better else value < self.best_value)
        )
        if better and self._save_best(fl_ctx):
            self.best_round, self.best_value = round_number, value
            self.write()

    def add_cross_site(self, owner: str, site: str, metrics: dict[str, float]) -> None:
        self.cross_site.setdefault(model_display_name(owner), {})[site] = metrics
        self.write()

    def finish(self) -> None:
        best = os.path.join(self.run_dir, rt_files.MODEL_DIR, rt_files.BEST_MODEL_FILE)
        if os.path.isfile(best):  # a copy of a round's model saved without zip checksums: added once, here
            rt_files.add_zip_checksums(best)
        rt_files.remove_spare(best)
        if self.select_metric and self.best_round is None:
            seen = ", ".join(sorted(self.metrics_seen)) or "none (no site returned validation metrics)"
            self.error = (
                f"select_metric {self.select_metric!r} was reported by no site, so no best model was kept; "
                f"the validation metrics are: {seen}"
            )
        self.write()

    def write(self) -> None:
        data: dict[str, Any] = {
            "select_metric": self.select_metric,
            "higher_is_better": self.higher_is_better,
            "best_round": self.best_round,
            "best_value": self.best_value,
            "cross_site": self.cross_site,
            "error": self.error,
        }
        path = os.path.join(self.run_dir, EVALUATION_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)

    def _save_best(self, fl_ctx: FLContext) -> bool:
        models = os.path.join(self.run_dir, rt_files.MODEL_DIR)
        os.makedirs(models, exist_ok=True)
        best = os.path.join(models, rt_files.BEST_MODEL_FILE)
        current = os.path.join(models, rt_files.GLOBAL_MODEL_FILE)
        if os.path.isfile(current):  # our persistor saved the current global model with the model's dtypes
            with open(current, "rb") as source:
                rt_files.write_swapped(best, lambda fh: shutil.copyfileobj(source, fh, 16 << 20))
            return True
        learnable = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        if not learnable:
            return False
        weights = learnable.get(ModelLearnableKey.WEIGHTS) or {}
        state = {k: torch.as_tensor(v) for k, v in weights.items()}  # a persistor of the user's own: no file of ours
        rt_files.write_swapped(best, lambda fh: torch.save(state, fh))
        return True
