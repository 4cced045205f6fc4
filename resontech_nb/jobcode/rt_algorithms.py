"""What a site's training gets and sends for FedProx, FedOpt and SCAFFOLD (``FederationConfig.algorithm``).

Shipped in the job's ``custom/`` folder; plain NVFlare + torch, no resontech_nb import.

- ``FedProxTerm``: ``payload["fedprox"]``; ``payload["fedprox"](model)`` is ``mu / 2 * ||w - w_global||^2`` over
  the model's trainable parameters, to add to the loss.
- ``ScaffoldControls``: ``payload["scaffold"]``; ``payload["scaffold"].correct(model, lr)`` after every optimizer
  step moves the parameters by ``-lr * (c_global - c_local)``. After training, ``finish`` gives the site's new
  control variate from where the model ended (Karimireddy et al. 2020, option II, as NVFlare's
  ``PTScaffoldHelper`` computes it, with the sum of the learning rates used in place of steps x rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rt_checks
import rt_tensors
import torch


class FedProxTerm:
    """``mu / 2 * sum ||w - w_global||^2`` over a model's trainable parameters (Li et al. 2020)."""

    def __init__(self, global_weights: Mapping[str, torch.Tensor], mu: float) -> None:
        self.mu = float(mu)
        self._global = dict(global_weights)
        self._on_device: dict[str, torch.Tensor] = {}

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        total: torch.Tensor | None = None
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad or name not in self._global:
                continue
            reference = self._reference(name, parameter)
            term = (parameter - reference).pow(2).sum()
            total = term if total is None else total + term
        if total is None:
            return torch.zeros(())
        return total * (self.mu / 2)

    def _reference(self, name: str, parameter: torch.Tensor) -> torch.Tensor:
        cached = self._on_device.get(name)
        if cached is None or cached.device != parameter.device or cached.dtype != parameter.dtype:
            cached = torch.as_tensor(self._global[name]).to(parameter.device, parameter.dtype)
            self._on_device[name] = cached
        return cached


class ScaffoldControls:
    """One site's SCAFFOLD control variates for one round: the global ``c`` and this site's ``c_i``."""

    def __init__(self, c_global: Mapping[str, Any], c_local: dict[str, torch.Tensor]) -> None:
        self.c_global = {k: rt_tensors.as_tensor(v) for k, v in c_global.items()}
        self.c_local = c_local  # kept by the executor from round to round; filled here on first use
        self.steps = 0
        self.lr_sum = 0.0
        self._keys: list[str] = []
        self._correction: dict[str, torch.Tensor] = {}

    def correct(self, model: torch.nn.Module, lr: float) -> None:
        """After an optimizer step taken at learning rate ``lr``: ``w -= lr * (c_global - c_local)``."""
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if not parameter.requires_grad or name not in self.c_global:
                    continue
                parameter.add_(self._correction_for(name, parameter), alpha=-float(lr))
        self.steps += 1
        self.lr_sum += float(lr)

    def _correction_for(self, name: str, parameter: torch.Tensor) -> torch.Tensor:
        correction = self._correction.get(name)
        if correction is None or correction.device != parameter.device or correction.dtype != parameter.dtype:
            if name not in self.c_local:
                self.c_local[name] = torch.zeros(parameter.shape, dtype=torch.float32)
                self._keys.append(name)
            elif name not in self._keys:
                self._keys.append(name)
            correction = (self.c_global[name].float() - self.c_local[name]).to(parameter.device, parameter.dtype)
            self._correction[name] = correction
        return correction

    def finish(self, weights: Mapping[str, torch.Tensor], global_weights: Mapping[str, torch.Tensor]) -> dict:
        """The site's new ``c_i`` (kept) and ``c_i(new) - c_i(old)`` for the server, as numpy arrays."""
        if self.steps == 0 or self.lr_sum <= 0:
            raise rt_checks.TrainingContractError(
                "algorithm='scaffold' but fl_train_model never called payload['scaffold'].correct(model, lr): "
                "call it after every optimizer.step() (the default training loop does)"
            )
        delta = {}
        for name in self._keys:
            old = self.c_local[name]
            drift = (global_weights[name].detach().double() - weights[name].detach().double()) / self.lr_sum
            new = (old.double() - self.c_global[name].double() + drift).float()
            delta[name] = (new - old).numpy()
            self.c_local[name] = new
        return delta
