"""FedOpt: the server treats the sample-weighted mean update as a gradient and steps its own optimizer.

NVFlare's ``PTFedOptModelShareableGenerator`` (job side: ``jobcode/rt_fedopt.py``): SGD with ``fedopt_momentum``
or Adam, at ``fedopt_lr`` (Reddi et al. 2021). SGD at rate 1 without momentum is FedAvg.
"""

from __future__ import annotations

from typing import Any

from ..fields import Setting
from .fedavg import FedAvg

OPTIMIZERS = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}
DEFAULT_LR = {"sgd": 1.0, "adam": 0.01}
# Adam on the server as the FedOpt paper runs it: a large epsilon (its "adaptivity") keeps early steps sane.
ADAM_ARGS = {"betas": [0.9, 0.99], "eps": 1e-3}
GENERATOR = "rt_fedopt.RTFedOptShareableGenerator"  # NVFlare's PTFedOptModelShareableGenerator


class FedOpt(FedAvg):
    name = "fedopt"
    works_on_update = True
    settings = {
        "fedopt_optimizer": Setting(
            "sgd",
            "FedOpt's server optimizer: " + " or ".join(OPTIMIZERS),
            flag=True,
            ok=lambda v: v in OPTIMIZERS,
            problem="{value!r} is unknown; use one of: " + ", ".join(OPTIMIZERS),
        ),
        "fedopt_lr": Setting(
            0.0,
            f"FedOpt's server learning rate (0: {DEFAULT_LR['sgd']} for sgd, {DEFAULT_LR['adam']} for adam)",
            flag=True,
            ok=lambda v: v >= 0,
            problem=f"must be >= 0 (0 takes {DEFAULT_LR['sgd']} for sgd, {DEFAULT_LR['adam']} for adam), got {{value}}",
        ),
        "fedopt_momentum": Setting(
            0.6,
            "FedOpt's SGD momentum on the server",
            flag=True,
            ok=lambda v: 0 <= v < 1,
            problem="must be at least 0 and below 1 (e.g. 0.6), got {value}",
        ),
    }

    def shareable_generator(self) -> dict[str, Any]:
        args = {"optimizer_args": self.optimizer_args(), "source_model": "model"}
        return {"id": "shareable_generator", "path": GENERATOR, "args": args}

    def server_components(self, model_class: str) -> list[dict[str, Any]]:
        # the server optimizer's own instance of the model
        return [{"id": "model", "path": f"model_def.{model_class}", "args": {}}]

    def optimizer_args(self) -> dict[str, Any]:
        """The server optimizer as an NVFlare component: ``{"path": ..., "args": {...}}``."""
        name = self.federation.fedopt_optimizer
        args: dict[str, Any] = {"lr": self.federation.fedopt_lr or DEFAULT_LR[name]}
        if name == "sgd":
            args["momentum"] = self.federation.fedopt_momentum
        else:
            args.update(ADAM_ARGS)
        # config_type "dict": NVFlare's config reader hands this on as a dict instead of building it (the generator
        # builds the optimizer itself, once it has the model's parameters)
        return {"path": OPTIMIZERS[name], "args": args, "config_type": "dict"}
