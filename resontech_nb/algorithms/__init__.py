"""The federated algorithms one setting chooses: ``FederationConfig.algorithm``.

- ``fedavg``: the sample-weighted mean of the sites' models (McMahan et al. 2017).
- ``fedprox``: FedAvg whose local training adds ``fedprox_mu / 2 * ||w - w_global||^2`` to the loss, which
  keeps each site's model near the global one on data that differs between sites (Li et al. 2020). The
  default loop adds the term; a custom ``fl_train_model`` gets ``payload["fedprox_mu"]`` and
  ``payload["fedprox"]``, a callable that returns the term for a model: ``loss = loss + payload["fedprox"](model)``.
- ``fedopt``: the server treats the sample-weighted mean update as a gradient and steps its own optimizer
  (NVFlare's ``PTFedOptModelShareableGenerator``): SGD with ``fedopt_momentum`` or Adam, at ``fedopt_lr``
  (Reddi et al. 2021). SGD at rate 1 without momentum is FedAvg.
- ``scaffold``: control variates correct each site's drift (Karimireddy et al. 2020; NVFlare's
  ``ScatterAndGatherScaffold`` on the server). The default loop applies the correction; a custom loop calls
  ``payload["scaffold"].correct(model, lr)`` after every optimizer step.

The job side of the payload helpers is ``jobcode/rt_algorithms.py``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..config.settings import FederationConfig

ALGORITHMS = ("fedavg", "fedprox", "fedopt", "scaffold")
FEDOPT_OPTIMIZERS = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}
FEDOPT_DEFAULT_LR = {"sgd": 1.0, "adam": 0.01}
# Adam on the server as the FedOpt paper runs it: a large epsilon (its "adaptivity") keeps early steps sane.
FEDOPT_ADAM_ARGS = {"betas": [0.9, 0.99], "eps": 1e-3}

# What a custom fl_train_model must read for the algorithm to act, and how to use it.
PAYLOAD_USE = {
    "fedprox": (
        "fedprox",
        "its sites train as plain FedAvg would",
        "add the proximal term to the loss: loss = loss + payload['fedprox'](model)",
    ),
    "scaffold": (
        "scaffold",
        "every site's round will fail",
        "call payload['scaffold'].correct(model, lr) after every optimizer.step()",
    ),
}


def algorithm_problem(federation: FederationConfig) -> str:
    """What is wrong with the algorithm settings of ``federation``; "" when they are usable."""
    if federation.algorithm not in ALGORITHMS:
        return f"unknown algorithm {federation.algorithm!r}; use one of: {', '.join(ALGORITHMS)}"
    if federation.fedprox_mu < 0:
        return f"fedprox_mu must be >= 0 (e.g. 0.01; 0 is plain FedAvg), got {federation.fedprox_mu}"
    if federation.fedopt_optimizer not in FEDOPT_OPTIMIZERS:
        return f"unknown fedopt_optimizer {federation.fedopt_optimizer!r}; use one of: {', '.join(FEDOPT_OPTIMIZERS)}"
    if federation.fedopt_lr < 0:
        return (
            f"fedopt_lr must be >= 0 (0 takes {FEDOPT_DEFAULT_LR['sgd']} for sgd, "
            f"{FEDOPT_DEFAULT_LR['adam']} for adam), got {federation.fedopt_lr}"
        )
    if not 0 <= federation.fedopt_momentum < 1:
        return f"fedopt_momentum must be at least 0 and below 1 (e.g. 0.6), got {federation.fedopt_momentum}"
    return ""


def fedopt_optimizer_args(federation: FederationConfig) -> dict[str, Any]:
    """The server optimizer as an NVFlare component: ``{"path": ..., "args": {...}}``."""
    name = federation.fedopt_optimizer
    args: dict[str, Any] = {"lr": federation.fedopt_lr or FEDOPT_DEFAULT_LR[name]}
    if name == "sgd":
        args["momentum"] = federation.fedopt_momentum
    else:
        args.update(FEDOPT_ADAM_ARGS)
    # config_type "dict": NVFlare's config reader hands this on as a dict instead of building it (the generator
    # builds the optimizer itself, once it has the model's parameters)
    return {"path": FEDOPT_OPTIMIZERS[name], "args": args, "config_type": "dict"}


def sends_difference(federation: FederationConfig) -> bool:
    """Whether sites send ``local - global`` (WEIGHT_DIFF) rather than their whole model.

    FedOpt and SCAFFOLD work on the update, and so do the privacy filters (percentile and SVT act on its
    values; a withheld tensor must leave the global one as it was). Plain FedAvg sends whole models.
    """
    return federation.algorithm in ("fedopt", "scaffold") or bool(federation.privacy)


def unread_payload_warning(source: str, algorithm: str) -> str:
    """A warning when a custom ``fl_train_model`` in ``source`` never reads what ``algorithm`` gives it."""
    if algorithm not in PAYLOAD_USE or _uses_default_loop(source):
        return ""
    field, outcome, how = PAYLOAD_USE[algorithm]
    if re.search(rf"""["']{field}(_mu)?["']""", source):
        return ""
    return f"algorithm={algorithm!r}, but fl_train_model never reads payload[{field!r}], so {outcome}: {how}"


def _uses_default_loop(source: str) -> bool:
    return re.search(r"^def fl_train_model\(payload\):\n    return default_train_model\(", source, re.M) is not None
