"""User subclasses of NVFlare's Executor and ModelPersistor (the guide's "Advanced" section)."""

from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.shareable import make_reply

from resontech_nb.jobcode.rt_persistor import RTModelPersistor


class OffsetPersistor(RTModelPersistor):
    """Our default persistor, but the initial global model starts 100 higher."""

    def load_model(self, fl_ctx):
        learnable = super().load_model(fl_ctx)
        learnable["weights"] = {k: v + 100.0 for k, v in learnable["weights"].items()}
        return learnable


class PlusOneExecutor(Executor):
    """A plain NVFlare executor written by hand: adds 1 to every weight, no model_def involved."""

    def __init__(self, increment: float = 1.0):
        super().__init__()
        self.increment = increment

    def execute(self, task_name, shareable, fl_ctx, abort_signal):
        if task_name != "train":
            return make_reply(ReturnCode.TASK_UNKNOWN)
        incoming = from_shareable(shareable)
        weights = {k: v + self.increment for k, v in incoming.data.items()}
        meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: 1, "rt_samples": 1, "rt_loss": 0.5}
        return DXO(DataKind.WEIGHTS, data=weights, meta=meta).to_shareable()


class WrongShapeExecutor(Executor):
    """A hand-written executor that sends a bias of the wrong shape: only the server can catch it."""

    def execute(self, task_name, shareable, fl_ctx, abort_signal):
        if task_name != "train":
            return make_reply(ReturnCode.TASK_UNKNOWN)
        weights = dict(from_shareable(shareable).data)
        weights["b"] = weights["b"][:2]
        meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: 1, "rt_samples": 1, "rt_loss": 0.5}
        return DXO(DataKind.WEIGHTS, data=weights, meta=meta).to_shareable()
