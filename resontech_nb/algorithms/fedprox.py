"""FedProx: FedAvg whose local training adds ``fedprox_mu / 2 * ||w - w_global||^2`` to the loss (Li et al. 2020).

The term keeps each site's model near the global one on data that differs between sites. The default loop adds
it; a custom ``fl_train_model`` gets ``payload["fedprox_mu"]`` and ``payload["fedprox"]``, a callable that
returns the term for a model: ``loss = loss + payload["fedprox"](model)``.
"""

from __future__ import annotations

from typing import Any

from ..fields import Setting
from .base import PayloadUse
from .fedavg import FedAvg


class FedProx(FedAvg):
    name = "fedprox"
    settings = {
        "fedprox_mu": Setting(
            0.01,
            "FedProx's proximal weight mu (0 is plain FedAvg)",
            flag=True,
            ok=lambda v: v >= 0,
            problem="must be >= 0 (e.g. 0.01; 0 is plain FedAvg), got {value}",
        ),
    }
    payload_use = PayloadUse(
        "fedprox",
        "its sites train as plain FedAvg would",
        "add the proximal term to the loss: loss = loss + payload['fedprox'](model)",
    )

    def executor_args(self) -> dict[str, Any]:
        return {**super().executor_args(), "fedprox_mu": self.federation.fedprox_mu}
