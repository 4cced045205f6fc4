"""NVFlare's ScatterAndGather, with ``min_clients`` counting good answers and its ``task_check_period`` applied.

NVFlare ends a round's wait once ``min_clients`` sites have responded, failed responses included, so
with ``wait_time_after_min_received`` at 0 one failed site could leave fewer than ``min_clients``
updates to aggregate while a healthy site was still training. Here every failed response makes the
round wait for one more site (never more than all of them, never past ``train_timeout``).

NVFlare 2.9's Controller hands ``task_check_period`` to its communicator as a public attribute, while
the communicator's loops read a private one (default 0.2 s); here both are set, so the period asked for
is the one that paces a round.

NVFlare's server clean-up every ``memory_gc_rounds`` is configurable in both (the job turns it off by
default: see FederationConfig). ``RTScatterAndGatherScaffold`` is the same for NVFlare's SCAFFOLD
workflow (``ScatterAndGatherScaffold``, which sends the global control variates with the model and adds
the mean of the sites' control deltas).

Just before a train task goes out, its weights are marked to travel as raw bytes (``rt_wire.raw_task``,
``rt_arrays``), which also spares NVFlare's deep copy of a broadcast task's data. The model that NVFlare's
global-model and cross-site evaluation send after the last round travels the same way (``RTGlobalModelEval``,
``RTCrossSiteModelEval``).
Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

from nvflare.apis.controller_spec import ClientTask
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.impl.bcast_manager import _KEY_MIN_RESPS
from nvflare.app_common.workflows.cross_site_model_eval import CrossSiteModelEval
from nvflare.app_common.workflows.global_model_eval import GlobalModelEval
from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather
from nvflare.app_common.workflows.scatter_and_gather_scaffold import ScatterAndGatherScaffold
from rt_wire import raw_task


class GoodAnswers:
    """Mixed in before a ScatterAndGather: min_clients counts good answers; task_check_period applies; raw weights."""

    def set_communicator(self, communicator) -> None:  # noqa: ANN001 - NVFlare's WFCommSpec
        super().set_communicator(communicator)
        if hasattr(communicator, "_task_check_period"):
            communicator._task_check_period = self._task_check_period

    def _process_train_result(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        result = client_task.result
        rc = result.get_return_code() if result is not None else None
        props = client_task.task.props
        if rc and rc != ReturnCode.OK and _KEY_MIN_RESPS in props:
            targets = client_task.task.targets or [c.name for c in self._engine.get_clients()]
            props[_KEY_MIN_RESPS] = min(int(props[_KEY_MIN_RESPS]) + 1, len(targets))
        super()._process_train_result(client_task, fl_ctx)

    def _prepare_train_task_data(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        raw_task(client_task.task.data)  # before NVFlare's snapshot of a broadcast task's data
        super()._prepare_train_task_data(client_task, fl_ctx)


class RTScatterAndGather(GoodAnswers, ScatterAndGather):
    """FedAvg, FedProx and FedOpt rounds (the algorithm lives in the sites and the shareable generator)."""


class RTScatterAndGatherScaffold(GoodAnswers, ScatterAndGatherScaffold):
    """SCAFFOLD rounds: the global control variates travel with the model.

    NVFlare's ScatterAndGatherScaffold does not pass ``memory_gc_rounds`` on to ScatterAndGather; here it does.
    """

    def __init__(self, memory_gc_rounds: int = 1, **kwargs) -> None:  # noqa: ANN003 - ScatterAndGatherScaffold's
        super().__init__(**kwargs)
        self._memory_gc_rounds = memory_gc_rounds


class RawValidationTask:
    """Mixed in before NVFlare's evaluation workflows: the model a validate task carries travels raw."""

    def _before_send_validate_task_cb(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        super()._before_send_validate_task_cb(client_task, fl_ctx)  # loads the model into the task's data
        if client_task.task.data is not None and client_task.task.data.get("DXO") is not None:
            raw_task(client_task.task.data)


class RTGlobalModelEval(RawValidationTask, GlobalModelEval):
    """NVFlare's GlobalModelEval (the final global model validated on every site), its model sent raw."""


class RTCrossSiteModelEval(RawValidationTask, CrossSiteModelEval):
    """NVFlare's CrossSiteModelEval (every model on every site), each model sent raw."""

