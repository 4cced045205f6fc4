"""FedOpt on the server: NVFlare's ``PTFedOptModelShareableGenerator``, started from the job's global model.

NVFlare's generator steps a torch optimizer on its own instance of the model (a component built from
``model_def``); that instance starts from the class's random initialisation, not from the persistor's
initial weights (the notebook's ``initial_weights`` or the class's own state), so its first step would
start from a different model than the one the sites trained. Here the instance takes the current global
model's weights before the first step; after that it is the global model, step by step.
Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

import numpy as np
import torch
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.learnable import Learnable
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_opt.pt.fedopt import PTFedOptModelShareableGenerator


class RTFedOptShareableGenerator(PTFedOptModelShareableGenerator):
    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - NVFlare's arguments, unchanged
        super().__init__(**kwargs)
        self._started_from_global = False

    def shareable_to_learnable(self, shareable: Shareable, fl_ctx: FLContext) -> Learnable:
        if not self._started_from_global and self.model is not None:
            base = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
            weights = base[ModelLearnableKey.WEIGHTS] if base else None
            if weights:
                state = self.model.state_dict()
                with torch.no_grad():
                    for key, value in weights.items():
                        if key in state:
                            state[key].copy_(torch.as_tensor(np.asarray(value)).reshape(state[key].shape))
                self._started_from_global = True
        return super().shareable_to_learnable(shareable, fl_ctx)
