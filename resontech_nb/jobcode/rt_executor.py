"""Client side of a resontech_nb job: calls ``model_def.fl_train_model`` once per round.

Shipped in the job's ``custom/`` folder; plain NVFlare + torch, no resontech_nb import.
Each site finds its shard through the ``shards`` map (site name -> ZIP path), the
``RESONTECH_SHARD`` environment variable, or ``<data_dir>/<site>.zip``.
"""

from __future__ import annotations

import importlib
import os
import traceback
from typing import Any

import numpy as np
import torch
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants

ERROR_HEADER = "rt_error"


class TrainingContractError(RuntimeError):
    """fl_train_model returned something FedAvg cannot use."""


def to_numpy(state_dict: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu().numpy()
        else:
            out[key] = np.asarray(value)
    return out


def to_state_dict(weights: dict[str, Any], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Numpy weights from the server as tensors with the model's own dtypes."""
    out = {}
    for key, value in weights.items():
        tensor = torch.as_tensor(np.asarray(value))
        if key in reference:
            tensor = tensor.to(reference[key].dtype).reshape(reference[key].shape)
        out[key] = tensor
    return out


def check_result(result: Any) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """Validate fl_train_model's return value; return (weights, samples, metrics)."""
    if not isinstance(result, dict):
        raise TrainingContractError(
            f"fl_train_model returned {type(result).__name__}; return a dict with 'weights', 'samples' and 'metrics'"
        )
    weights = result.get("weights")
    if not weights:
        raise TrainingContractError("fl_train_model returned no 'weights': return {'weights': model.state_dict(), ...}")
    samples = result.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples <= 0:
        raise TrainingContractError(
            f"fl_train_model returned samples={samples!r}: return the real number of training samples "
            "(FedAvg weighs each site by it)"
        )
    metrics = result.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise TrainingContractError("fl_train_model returned 'metrics' that is not a dict")
    return dict(weights), int(samples), metrics


def plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class RTTrainExecutor(Executor):
    """Runs the notebook's ``fl_train_model(payload)`` for the ``train`` task."""

    def __init__(
        self,
        model_module: str = "model_def",
        model_class: str = "Net",
        shards: dict[str, str] | None = None,
        data_dir: str = "",
        hyperparams: dict[str, Any] | None = None,
        device: str = "",
        train_task_name: str = "train",
    ) -> None:
        super().__init__()
        self.model_module = model_module
        self.model_class = model_class
        self.shards = dict(shards or {})
        self.data_dir = data_dir
        self.hyperparams = dict(hyperparams or {})
        self.device = device
        self.train_task_name = train_task_name
        self._data_path: str | None = None
        self._module: Any = None

    # -- helpers ---------------------------------------------------------------
    def _model_def(self) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self.model_module)
        return self._module

    def _shard_path(self, site: str) -> str:
        path = os.environ.get("RESONTECH_SHARD") or self.shards.get(site)
        if not path and self.data_dir:
            path = os.path.join(self.data_dir, f"{site}.zip")
        if not path:
            raise FileNotFoundError(
                f"no shard configured for site {site!r}: set RESONTECH_SHARD on the site or add it to the job's shards"
            )
        if not os.path.exists(path):
            raise FileNotFoundError(f"shard for site {site!r} not found at {path}")
        return path

    def _extracted_shard(self, site: str, fl_ctx: FLContext) -> str:
        if self._data_path is None:
            shard = self._shard_path(site)
            if os.path.isdir(shard):
                self._data_path = shard
            else:
                import rt_manifest

                workspace = fl_ctx.get_engine().get_workspace()
                dest = os.path.join(workspace.get_run_dir(fl_ctx.get_job_id()), "rt_data", site)
                self._data_path = str(rt_manifest.safe_extract(shard, dest))
        return self._data_path

    def _device(self) -> str:
        if self.device:
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    # -- the task ----------------------------------------------------------------
    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name != self.train_task_name:
            return make_reply(ReturnCode.TASK_UNKNOWN)
        site = fl_ctx.get_identity_name()
        current_round = shareable.get_header(AppConstants.CURRENT_ROUND)
        try:
            incoming = from_shareable(shareable)
            module = self._model_def()
            model_cls = getattr(module, self.model_class)
            reference = model_cls().state_dict()
            payload = {
                "initial_weights": to_state_dict(incoming.data, reference),
                "data_path": self._extracted_shard(site, fl_ctx),
                "round": int(current_round or 0),
                "num_rounds": int(shareable.get_header(AppConstants.NUM_ROUNDS) or 0),
                "site_name": site,
                "hyperparams": dict(self.hyperparams),
                "device": self._device(),
            }
            if abort_signal.triggered:
                return make_reply(ReturnCode.TASK_ABORTED)
            weights, samples, metrics = check_result(module.fl_train_model(payload))
        except Exception as exc:  # reported to the server as this site's failed round
            message = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                batch = self.hyperparams.get("batch_size")
                message = f"CUDA out of memory with batch_size={batch}: lower batch_size in TrainingConfig"
            self.log_error(fl_ctx, f"round {current_round} failed on {site}: {message}\n{traceback.format_exc()}")
            reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
            reply.set_header(ERROR_HEADER, message[:2000])
            return reply

        metrics = plain_metrics(metrics)
        meta = {
            MetaKey.NUM_STEPS_CURRENT_ROUND: samples,
            "rt_samples": samples,
            "rt_metrics": metrics,
        }
        if "loss" in metrics:
            meta["rt_loss"] = metrics["loss"]
        self.log_info(fl_ctx, f"round {current_round} on {site}: {samples} samples, metrics {metrics}")
        dxo = DXO(data_kind=DataKind.WEIGHTS, data=to_numpy(weights), meta=meta)
        return dxo.to_shareable()
