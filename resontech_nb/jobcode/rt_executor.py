"""Client side of a resontech_nb job: calls ``model_def.fl_train_model`` (and ``fl_evaluate_model``).

Shipped in the job's ``custom/`` folder; plain NVFlare + torch, no resontech_nb import.
Each site finds its shard through the ``shards`` map (site name -> ZIP path), the
``RESONTECH_SHARD`` environment variable, or ``<data_dir>/<site>.zip``.

Tasks:
- ``train``: evaluates the incoming global model first (when ``model_def`` has ``fl_evaluate_model``
  and the model is the previous round's result), then trains. What it sends is checked against the
  model's own state_dict (keys, shapes, dtypes, finite values); a failing check fails the round here.
- ``validate``: evaluates a model the server sends (the final global model, or another site's in
  cross-site evaluation) and returns its metrics.
- ``submit_model``: returns this site's last local model (cross-site evaluation).

With ``algorithm`` fedprox or scaffold the payload also holds ``fedprox_mu`` and ``fedprox`` (the proximal
term) or ``scaffold`` (the control variates, kept here from round to round); see ``rt_algorithms``.

``payload["log"](name, value, step=None)`` lets ``fl_train_model`` log its own step metrics (e.g. a batch's
loss): they travel with this site's result and the server keeps them in the round's record
(``clients[site]["steps"]``), where the notebook's tracking sinks find them. ``step`` defaults to a count per
name that runs over the whole job on this site.
"""

from __future__ import annotations

import importlib
import os
import traceback
from typing import Any

import rt_algorithms
import rt_checks
import rt_pieces
import rt_shm
import torch
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from rt_wire import release_task_weights, task_weights, to_numpy, to_state_dict, update_dxo

ERROR_HEADER = "rt_error"
EVALUATE_FN = "fl_evaluate_model"
MAX_STEP_LOGS = 5000  # per site and round: what travels with the result stays small


class StepLog:
    """``payload["log"]``: collects ``(name, value, step)`` during one round's ``fl_train_model``."""

    def __init__(self, counters: dict[str, int]) -> None:
        self.rows: list[list[Any]] = []
        self.dropped = 0
        self._counters = counters  # kept by the executor: default steps run on from round to round

    def __call__(self, name: str, value: Any, step: int | None = None) -> None:
        name = str(name)
        if step is None:
            step = self._counters.get(name, 0)
        self._counters[name] = int(step) + 1
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"payload['log']({name!r}, ...) needs a number, got {type(value).__name__}") from exc
        if len(self.rows) >= MAX_STEP_LOGS:
            self.dropped += 1
            return
        self.rows.append([name, number, int(step)])


def error_reply(message: str, rc: str = ReturnCode.EXECUTION_EXCEPTION) -> Shareable:
    reply = make_reply(rc)
    reply.set_header(ERROR_HEADER, message[:2000])
    return reply


class RTTrainExecutor(Executor):
    """Runs the notebook's ``fl_train_model(payload)`` for ``train`` and ``fl_evaluate_model`` for ``validate``."""

    def __init__(
        self,
        model_module: str = "model_def",
        model_class: str = "Net",
        shards: dict[str, str] | None = None,
        data_dir: str = "",
        hyperparams: dict[str, Any] | None = None,
        device: str = "",
        algorithm: str = "fedavg",
        fedprox_mu: float = 0.0,
        send_difference: bool = False,
        keep_local_model: bool = True,
        train_task_name: str = AppConstants.TASK_TRAIN,
        validate_task_name: str = AppConstants.TASK_VALIDATION,
        submit_model_task_name: str = AppConstants.TASK_SUBMIT_MODEL,
    ) -> None:
        super().__init__()
        self.model_module = model_module
        self.model_class = model_class
        self.shards = dict(shards or {})
        self.data_dir = data_dir
        self.hyperparams = dict(hyperparams or {})
        self.device = device
        self.algorithm = algorithm
        self.fedprox_mu = float(fedprox_mu)
        self.send_difference = bool(send_difference)  # decided at build time (building/nvflare_config.sends_difference)
        # The last local model, for cross-site evaluation's submit_model task; a whole copy of the model in
        # memory between rounds, so jobs without cross-site evaluation do not keep it.
        self.keep_local_model = bool(keep_local_model)
        self.train_task_name = train_task_name
        self.validate_task_name = validate_task_name
        self.submit_model_task_name = submit_model_task_name
        self._data_path: str | None = None
        self._module: Any = None
        self._reference: dict[str, tuple[tuple[int, ...], Any]] | None = None
        self._last_weights: dict[str, Any] | None = None
        self._num_rounds = 0
        self._scaffold_local: dict[str, torch.Tensor] = {}  # this site's control variate c_i
        self._step_counters: dict[str, int] = {}  # payload["log"]'s default steps, over the whole job
        self._keeps_freed_memory: bool | None = None  # rt_pieces.keep_freed_memory, decided at the first task

    # -- helpers ---------------------------------------------------------------
    def _model_def(self) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self.model_module)
        return self._module

    def _model_reference(self, weights: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Shapes and dtypes of the model's state_dict, from the first task's weights: the server's global model.

        The server built that model from the same class. Building it here, even on the meta device, can take
        seconds: torch imports its Python kernels (and dynamo) for some ops, e.g. ``nn.Embedding``'s init.
        """
        if self._reference is None:
            self._reference = rt_checks.reference_of(to_state_dict(weights, {}))
        return self._reference

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
                import rt_zip

                workspace = fl_ctx.get_engine().get_workspace()
                dest = os.path.join(workspace.get_run_dir(fl_ctx.get_job_id()), "rt_data", site)
                self._data_path = str(rt_zip.safe_extract(shard, dest))
        return self._data_path

    def _device(self) -> str:
        if self.device:
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _payload(self, shareable: Shareable, fl_ctx: FLContext) -> dict[str, Any]:
        site = fl_ctx.get_identity_name()
        return {
            "data_path": self._extracted_shard(site, fl_ctx),
            "round": int(shareable.get_header(AppConstants.CURRENT_ROUND) or 0),
            "num_rounds": int(shareable.get_header(AppConstants.NUM_ROUNDS) or 0),
            "site_name": site,
            "hyperparams": dict(self.hyperparams),
            "device": self._device(),
            "work_dir": fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()),
        }

    def _evaluate(self, weights: dict[str, torch.Tensor], payload: dict[str, Any]) -> tuple[dict, int] | None:
        evaluate = getattr(self._model_def(), EVALUATE_FN, None)
        if not callable(evaluate):
            return None
        return rt_checks.check_evaluation_result(evaluate({**payload, "weights": weights}))

    def _failure(self, fl_ctx: FLContext, what: str, exc: Exception) -> str:
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, rt_checks.TrainingContractError):
            message = str(exc)
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            batch = self.hyperparams.get("batch_size")
            message = f"CUDA out of memory with batch_size={batch}: lower batch_size in TrainingConfig"
        self.log_error(fl_ctx, f"{what} failed on {fl_ctx.get_identity_name()}: {message}\n{traceback.format_exc()}")
        return message

    # -- the tasks ---------------------------------------------------------------
    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name == self.train_task_name:
            return self._train(shareable, fl_ctx, abort_signal)
        if task_name == self.validate_task_name:
            return self._validate(shareable, fl_ctx)
        if task_name == self.submit_model_task_name:
            return self._submit_model(fl_ctx)
        return make_reply(ReturnCode.TASK_UNKNOWN)

    def _train(self, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        current_round = shareable.get_header(AppConstants.CURRENT_ROUND)
        meta: dict[str, Any] = {}
        try:
            global_weights, global_controls = task_weights(shareable)
            release_task_weights(shareable)
            if self._keeps_freed_memory is None:  # on the local target a large model's site keeps the pages of
                model_bytes = sum(getattr(v, "nbytes", 0) for v in global_weights.values())  # its last update
                self._keeps_freed_memory = bool(rt_shm.directory()) and rt_pieces.keep_freed_memory(2 * model_bytes)
            if not self._keeps_freed_memory:  # else what it freed goes back to the system before training allocates
                rt_pieces.return_freed_memory()
            reference = self._model_reference(global_weights)
            incoming = to_state_dict(global_weights, reference)
            payload = self._payload(shareable, fl_ctx)
            self._num_rounds = payload["num_rounds"] or self._num_rounds
            if payload["round"] > 0:  # the incoming model is the previous round's global model
                meta.update(self._validation_meta(incoming, {**payload, "round": payload["round"] - 1}, fl_ctx))
            if abort_signal.triggered:
                return make_reply(ReturnCode.TASK_ABORTED)
            extras = self._algorithm_payload(incoming, global_controls)
            step_log = StepLog(self._step_counters)
            payload["log"] = step_log
            result = self._model_def().fl_train_model({**payload, "initial_weights": incoming, **extras})
            weights, samples, metrics = rt_checks.check_train_result(result, reference)
            control_delta = extras["scaffold"].finish(weights, incoming) if "scaffold" in extras else None
        except Exception as exc:  # reported to the server as this site's failed round
            message = self._failure(fl_ctx, f"round {current_round}", exc)
            reply = error_reply(message)
            for key, value in meta.items():  # the validation of the previous model still counts
                reply.set_header(key, value)
            return reply

        metrics = rt_checks.plain_metrics(metrics)
        meta.update({MetaKey.NUM_STEPS_CURRENT_ROUND: samples, "rt_samples": samples, "rt_metrics": metrics})
        if step_log.rows:
            meta["rt_steps"] = step_log.rows
        if step_log.dropped:
            dropped = f"payload['log']: {step_log.dropped} calls past {MAX_STEP_LOGS} this round dropped"
            self.log_warning(fl_ctx, dropped)
        if "loss" in metrics:
            meta["rt_loss"] = metrics["loss"]
        self._last_weights = weights if self.keep_local_model else None
        self.log_info(fl_ctx, f"round {current_round} on {payload['site_name']}: {samples} samples, metrics {metrics}")
        return update_dxo(weights, incoming, meta, self.send_difference, control_delta).to_shareable()

    def _algorithm_payload(self, incoming: dict[str, torch.Tensor], global_controls: Any) -> dict[str, Any]:
        """What fedprox or scaffold adds to the payload."""
        if self.algorithm == "fedprox":
            return {"fedprox_mu": self.fedprox_mu, "fedprox": rt_algorithms.FedProxTerm(incoming, self.fedprox_mu)}
        if self.algorithm == "scaffold":
            if global_controls is None:
                raise RuntimeError(
                    "algorithm='scaffold' but the server sent no control variates: the server must run "
                    "ScatterAndGatherScaffold (rebuild the job with resontech_nb)"
                )
            return {"scaffold": rt_algorithms.ScaffoldControls(global_controls, self._scaffold_local)}
        return {}

    def _validation_meta(self, weights: dict[str, torch.Tensor], payload: dict[str, Any], fl_ctx: FLContext) -> dict:
        """Evaluate the global model of ``payload['round']``; its failure fails only the validation."""
        meta: dict[str, Any] = {"rt_validated_round": payload["round"]}
        try:
            evaluated = self._evaluate(weights, payload)
        except Exception as exc:
            meta["rt_validation_error"] = self._failure(fl_ctx, f"validation of round {payload['round']}", exc)
            return meta
        if evaluated is None:
            return {}
        meta["rt_validation"], meta["rt_validation_samples"] = evaluated
        return meta

    def _validate(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        owner = shareable.get_header(AppConstants.MODEL_OWNER) or "global model"
        try:
            received = from_shareable(shareable).data
            weights = to_state_dict(received, self._model_reference(received))
            payload = self._payload(shareable, fl_ctx)
            # after training: the final global model (or a site's last local model) is the last round's
            payload["num_rounds"] = payload["num_rounds"] or self._num_rounds
            payload["round"] = max(payload["num_rounds"] - 1, 0)
            evaluated = self._evaluate(weights, payload)
        except Exception as exc:
            return error_reply(self._failure(fl_ctx, f"validation of {owner}", exc))
        metrics, samples = evaluated if evaluated is not None else ({}, 0)
        self.log_info(fl_ctx, f"validated {owner} on {fl_ctx.get_identity_name()}: {metrics}")
        return DXO(data_kind=DataKind.METRICS, data=metrics, meta={"rt_samples": samples}).to_shareable()

    def _submit_model(self, fl_ctx: FLContext) -> Shareable:
        if not self.keep_local_model:
            return error_reply(
                f"{fl_ctx.get_identity_name()} kept no local model: the job was built without cross_site_eval"
            )
        if self._last_weights is None:
            return error_reply(f"{fl_ctx.get_identity_name()} has no local model: it trained in no round")
        return DXO(data_kind=DataKind.WEIGHTS, data=to_numpy(self._last_weights)).to_shareable()
