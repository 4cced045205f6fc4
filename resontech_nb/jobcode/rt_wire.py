"""What travels between a site and the server: tensors as numpy arrays, the train task, the site's update.

The weights on the way are numpy arrays marked to travel raw (``rt_arrays``): the site's update here, the
server's train task in ``raw_task`` (called by the workflow just before a task is sent). What arrives
are read-only numpy arrays over the received bytes, made tensors without a copy.

Shipped in the job's ``custom/`` folder; plain NVFlare + torch, no resontech_nb import. A train task holds
the global model (WEIGHTS), or under SCAFFOLD a COLLECTION of the model and the global control variates.
An update is the site's whole model (WEIGHTS), or ``local - global`` (WEIGHT_DIFF) for FedOpt, SCAFFOLD and
the privacy filters, with SCAFFOLD's control delta beside it in a COLLECTION.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import rt_arrays
import rt_checks
import rt_tensors
import torch
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants


def to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Tensors as numpy arrays marked to travel raw; CPU tensors share their memory (no copy)."""
    out = {}
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.device.type != "cpu":
                value = value.cpu()
            out[key] = value.numpy() if value.dtype != torch.bfloat16 else value.float().numpy()
        else:
            out[key] = np.asarray(value)
    return rt_arrays.mark(out)


def to_state_dict(weights: Mapping[str, Any], reference: rt_checks.Reference) -> dict[str, torch.Tensor]:
    """Numpy weights from the server as tensors with the model's own dtypes and shapes (no copy when they match)."""
    out = {}
    for key, value in weights.items():
        tensor = rt_tensors.as_tensor(value)
        if key in reference:
            shape, dtype = reference[key]
            if dtype is not None and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            if tuple(tensor.shape) != tuple(shape):
                tensor = tensor.reshape(shape)
        out[key] = tensor
    return out


def raw_task(shareable: Shareable) -> None:
    """Marks a train task's weights (with SCAFFOLD, the model and the controls) to travel raw; views, no copy."""
    dxo = from_shareable(shareable)
    if dxo.data_kind == DataKind.COLLECTION:
        parts = {k: _marked(v) if isinstance(v, DXO) else v for k, v in dxo.data.items()}
        DXO(DataKind.COLLECTION, parts, dxo.meta).update_shareable(shareable)
    else:
        _marked(dxo).update_shareable(shareable)


def _marked(dxo: DXO) -> DXO:
    if dxo.data_kind not in (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF):
        return dxo
    return DXO(dxo.data_kind, rt_arrays.mark(dxo.data), dxo.meta)


def task_weights(shareable: Shareable) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The global model of a train task, and SCAFFOLD's global controls when the task carries them."""
    dxo = from_shareable(shareable)
    if dxo.data_kind == DataKind.COLLECTION:
        parts = dxo.data
        controls = parts.get(AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL)
        return parts[AppConstants.MODEL_WEIGHTS].data, (controls.data if controls is not None else None)
    return dxo.data, None


def release_task_weights(shareable: Shareable) -> None:
    """Empties a received train task of its weights, once the executor holds them.

    NVFlare keeps the task until the site's update has been sent; without its weights, the global model is
    freed when the executor is done with it, instead of staying beside the update while that goes out.
    """
    dxo = from_shareable(shareable)
    DXO(dxo.data_kind, {}, dxo.meta).update_shareable(shareable)


def update_dxo(
    weights: Mapping[str, torch.Tensor],
    global_weights: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    send_difference: bool,
    control_delta: dict[str, Any] | None = None,
) -> DXO:
    """The site's update: its model (WEIGHTS) or ``local - global`` (WEIGHT_DIFF), with SCAFFOLD's control delta."""
    if not send_difference:
        return DXO(data_kind=DataKind.WEIGHTS, data=to_numpy(weights), meta=meta)
    difference = {key: value - global_weights[key].to(value.dtype) for key, value in weights.items()}
    update = DXO(data_kind=DataKind.WEIGHT_DIFF, data=to_numpy(difference), meta=dict(meta))
    if control_delta is None:
        return update
    controls = DXO(data_kind=DataKind.WEIGHT_DIFF, data=rt_arrays.mark(control_delta), meta=dict(meta))
    parts = {AppConstants.MODEL_WEIGHTS: update, AlgorithmConstants.SCAFFOLD_CTRL_DIFF: controls}
    return DXO(data_kind=DataKind.COLLECTION, data=parts, meta=meta)
