"""SCAFFOLD: control variates correct each site's drift (Karimireddy et al. 2020).

The server runs NVFlare's ``ScatterAndGatherScaffold`` (``jobcode/rt_workflow.py``) and aggregates the model
and the control-variate difference as two parts. The default loop applies the correction; a custom loop calls
``payload["scaffold"].correct(model, lr)`` after every optimizer step.
"""

from __future__ import annotations

from typing import Any

from .base import PayloadUse
from .fedavg import FedAvg

WORKFLOW = "rt_workflow.RTScatterAndGatherScaffold"
PARTS = ("_model_weights_", "scaffold_c_diff")  # AppConstants.MODEL_WEIGHTS, AlgorithmConstants.SCAFFOLD_CTRL_DIFF


class Scaffold(FedAvg):
    name = "scaffold"
    works_on_update = True
    payload_use = PayloadUse(
        "scaffold",
        "every site's round will fail",
        "call payload['scaffold'].correct(model, lr) after every optimizer.step()",
    )

    def workflow(self) -> str:
        return WORKFLOW

    def expected_kind(self, update_kind: str) -> Any:
        return {part: "WEIGHT_DIFF" for part in PARTS}
