"""Server-side model locator: the final global model for NVFlare's global/cross-site evaluation.

Reads ``<run dir>/models/global_model.pt`` (written by ``rt_persistor``), falling back to the
current global model in memory. Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

import os

import rt_files
import torch
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.abstract.model_locator import ModelLocator
from nvflare.app_common.app_constant import AppConstants

GLOBAL_MODEL_NAME = "FL_global_model"


class RTModelLocator(ModelLocator):
    def get_model_names(self, fl_ctx: FLContext) -> list[str]:
        return [GLOBAL_MODEL_NAME]

    def locate_model(self, model_name: str, fl_ctx: FLContext) -> DXO | None:
        if model_name != GLOBAL_MODEL_NAME:
            return None
        run_dir = fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id())
        path = os.path.join(run_dir, rt_files.MODEL_DIR, rt_files.GLOBAL_MODEL_FILE)
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            return DXO(data_kind=DataKind.WEIGHTS, data={k: v.numpy() for k, v in state.items()})
        learnable = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        if learnable:
            return DXO(data_kind=DataKind.WEIGHTS, data=dict(learnable[ModelLearnableKey.WEIGHTS]))
        self.log_error(fl_ctx, f"no global model to evaluate ({path} missing)")
        return None


