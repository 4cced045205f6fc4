"""Checks on what a site's functions return, before anything leaves the site (and again on the server).

Shipped in the job's ``custom/`` folder; plain torch + numpy. Every problem is one sentence that
names the key and the fix, e.g. ``weights['fc.weight'] has shape (5,), the model's is (4,)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

if __package__:  # imported from the package on the notebook side
    from . import rt_tensors
else:  # a job's custom/ folder, where every rt_* module is top-level
    import rt_tensors


class TrainingContractError(RuntimeError):
    """fl_train_model or fl_evaluate_model returned something the federation cannot use."""


# (shape, dtype or None): what a state_dict entry must look like
Reference = Mapping[str, tuple[tuple[int, ...], Any]]


def reference_of(state_dict: Mapping[str, Any], with_dtypes: bool = True) -> dict[str, tuple[tuple[int, ...], Any]]:
    """The shapes (and dtypes) of a state_dict, as the checks compare against."""
    out = {}
    for key, value in state_dict.items():
        array = value if isinstance(value, torch.Tensor) else np.asarray(value)
        out[key] = (tuple(array.shape), array.dtype if with_dtypes else None)
    return out


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return rt_tensors.as_tensor(value)  # no copy, also of a read-only array as received
    return None


def _non_finite(tensor: torch.Tensor) -> str:
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return ""
    # A NaN or inf anywhere makes the sum non-finite; one pass without a mask, ~40x faster on big tensors.
    # A non-finite sum can also be an overflow of finite values: then the exact check decides.
    if tensor.numel() == 0 or bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all()):
        return ""
    return "NaN" if bool(torch.isnan(tensor).any()) else "inf"


def update_problem(weights: Mapping[str, Any], reference: Reference, who: str = "fl_train_model") -> str:
    """The first thing wrong with ``weights`` against the model's ``reference``; "" when they fit.

    Same keys, the same shape per key, the same dtype where the reference has one, every value finite.
    """
    missing = [key for key in reference if key not in weights]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return (
            f"weights lacks {missing[0]!r}{more}, which the model's state_dict has: "
            f"return {{'weights': model.state_dict(), ...}} from {who}"
        )
    extra = [key for key in weights if key not in reference]
    if extra:
        return (
            f"weights[{extra[0]!r}] is not in the model's state_dict: return the state_dict of the model class "
            "that was captured, without extra entries"
        )
    for key, (shape, dtype) in reference.items():
        tensor = _as_tensor(weights[key])
        if tensor is None:
            return f"weights[{key!r}] is a {type(weights[key]).__name__}, not a tensor: return model.state_dict()"
        if tuple(tensor.shape) != tuple(shape):
            return f"weights[{key!r}] has shape {tuple(tensor.shape)}, the model's is {tuple(shape)}"
        if dtype is not None and not _same_dtype(tensor, dtype):
            return (
                f"weights[{key!r}] has dtype {tensor.dtype}, the model's is {dtype}: do not change dtypes in training"
            )
        bad = _non_finite(tensor)
        if bad:
            return f"weights[{key!r}] holds {bad}: training diverged (lower the learning rate or check the loss)"
    return ""


def _same_dtype(tensor: torch.Tensor, dtype: Any) -> bool:
    if isinstance(dtype, torch.dtype):
        return tensor.dtype == dtype
    try:
        return torch.empty(0, dtype=tensor.dtype).numpy().dtype == np.dtype(dtype)
    except TypeError:  # a dtype numpy does not have (bfloat16): compare by name
        return str(tensor.dtype).removeprefix("torch.") == str(dtype)


def check_train_result(result: Any, reference: Reference) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """Validate fl_train_model's return value; return (weights, samples, metrics) or raise naming the problem."""
    if not isinstance(result, dict):
        raise TrainingContractError(
            f"fl_train_model returned {type(result).__name__}; return a dict with 'weights', 'samples' and 'metrics'"
        )
    weights = result.get("weights")
    if not weights:
        raise TrainingContractError("fl_train_model returned no 'weights': return {'weights': model.state_dict(), ...}")
    if not isinstance(weights, Mapping):
        raise TrainingContractError(
            f"fl_train_model returned 'weights' of type {type(weights).__name__}: return model.state_dict()"
        )
    samples = _positive_count(result.get("samples"), "fl_train_model", "training")
    metrics = result.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise TrainingContractError("fl_train_model returned 'metrics' that is not a dict")
    problem = update_problem(weights, reference)
    if problem:
        raise TrainingContractError(problem)
    return dict(weights), samples, dict(metrics)


def check_evaluation_result(result: Any) -> tuple[dict[str, float], int] | None:
    """Validate fl_evaluate_model's return value; (metrics, samples), or None when the site has nothing to validate."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise TrainingContractError(
            f"fl_evaluate_model returned {type(result).__name__}; return {{'metrics': {{...}}, 'samples': n}}"
        )
    metrics = result.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise TrainingContractError(
            "fl_evaluate_model returned no 'metrics': return {'metrics': {'loss': ..., 'accuracy': ...}, 'samples': n}"
        )
    plain = {}
    for key, value in metrics.items():
        number = _number(value)
        if number is None:
            raise TrainingContractError(
                f"fl_evaluate_model returned metrics[{key!r}] = {value!r}, which is not a number: return floats"
            )
        plain[str(key)] = number
    return plain, _positive_count(result.get("samples"), "fl_evaluate_model", "evaluated")


def _positive_count(samples: Any, who: str, what: str) -> int:
    if isinstance(samples, torch.Tensor) and samples.numel() == 1 and not samples.is_floating_point():
        samples = int(samples.item())
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples <= 0:
        raise TrainingContractError(
            f"{who} returned samples={samples!r}: return the real number of {what} samples "
            "(the server weighs each site by it)"
        )
    return int(samples)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def plain_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of a training metrics dict as floats (others are dropped: they cannot be averaged)."""
    out = {}
    for key, value in metrics.items():
        number = _number(value)
        if number is not None:
            out[str(key)] = number
    return out
