"""Server-side persistor: initial weights from the model class, the final global model as a .pt file.

The global model is saved every round (a job that stops early still leaves its latest model). A round's save
before the last skips the zip checksums torch computes over every byte (``compute_crc32``, torch 2.6 and later):
0.024 s instead of 0.058 s for a 45 M-parameter model. ``torch.load`` reads such a file as any other; the last
round's model, the one a finished job gives back, is written with them, and a job that ends earlier gets them
added to its last model at its end (``rt_files.add_zip_checksums``), so zip tools check what a job gives back.
Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import numpy as np
import torch
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor
from nvflare.app_common.app_constant import AppConstants

if __package__:  # the notebook side, where a user may subclass it: resontech_nb.jobcode.rt_persistor
    from . import rt_files, rt_shm
else:  # a job's custom/ folder, where every rt_* module is top-level
    import rt_files
    import rt_shm


class RTModelPersistor(ModelPersistor):
    """Builds the model from ``model_def`` (seeded by ``seed``); each global model goes to ``<run dir>/models``"""

    def __init__(
        self,
        model_module: str = "model_def",
        model_class: str = "Net",
        initial_weights: str = "",
        model_dir: str = rt_files.MODEL_DIR,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.model_module = model_module
        self.model_class = model_class
        self.initial_weights = initial_weights
        self.model_dir = model_dir
        self.seed = seed
        self._reference: dict[str, tuple[torch.Size, torch.dtype]] | None = None

    def _model(self) -> torch.nn.Module:
        module = importlib.import_module(self.model_module)
        return getattr(module, self.model_class)()

    def _shapes(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[torch.Size, torch.dtype]]:
        """Each state_dict entry's shape and dtype, from the model built once (building a big model takes seconds)."""
        if self._reference is None:
            state = state if state is not None else self._model().state_dict()
            self._reference = {k: (v.shape, v.dtype) for k, v in state.items()}
        return self._reference

    def _model_path(self, fl_ctx: FLContext) -> str:
        workspace = fl_ctx.get_engine().get_workspace()
        run_dir = workspace.get_run_dir(fl_ctx.get_job_id())
        return os.path.join(run_dir, self.model_dir, rt_files.GLOBAL_MODEL_FILE)

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        if self.seed is not None:  # the same initial weights in every run of the job (TrainingConfig.seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = self._model()
        else:
            model = self._model()
        state = model.state_dict()
        self._shapes(state)
        if self.initial_weights:
            path = self.initial_weights
            if not os.path.isabs(path):
                path = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
            state.update(torch.load(path, map_location="cpu", weights_only=True))
        weights = {k: v.detach().cpu().numpy() for k, v in state.items()}
        shared = rt_shm.directory()
        if shared:  # on the local target: round 0's task names these files instead of copying the model again
            weights = {k: rt_shm.shared_copy(v, shared) for k, v in weights.items()}
        self.log_info(fl_ctx, f"initial model {self.model_class}: {len(weights)} tensors")
        return make_model_learnable(weights=weights, meta_props={})

    def save_model(self, model_learnable: ModelLearnable, fl_ctx: FLContext) -> None:
        reference = self._shapes()
        state = {}
        for key, value in model_learnable[ModelLearnableKey.WEIGHTS].items():
            tensor = torch.as_tensor(np.asarray(value))
            if key in reference:
                shape, dtype = reference[key]
                tensor = tensor.to(dtype).reshape(shape)
            state[key] = tensor
        path = self._model_path(fl_ctx)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.nullcontext() if last_round(fl_ctx) else without_checksums():
            rt_files.write_swapped(path, lambda fh: torch.save(state, fh))  # a reader never sees half a model
        self.log_info(fl_ctx, f"saved global model to {path}")

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        super().handle_event(event_type, fl_ctx)
        if event_type in (EventType.ABOUT_TO_END_RUN, EventType.END_RUN):  # no model is saved after the workflows
            path = self._model_path(fl_ctx)
            if os.path.isfile(path):  # a job that ended early gives back a model saved without checksums
                rt_files.add_zip_checksums(path)  # (before the recorder, listed after us, reports the end)
            rt_files.remove_spare(path)


def last_round(fl_ctx: FLContext) -> bool:
    """Whether the workflow saving now is in its last round (ScatterAndGather's props); True when it says nothing."""
    current, start, count = (
        fl_ctx.get_prop(key) for key in (AppConstants.CURRENT_ROUND, AppConstants.START_ROUND, AppConstants.NUM_ROUNDS)
    )
    if not all(isinstance(value, int) for value in (current, start, count)):
        return True
    return current + 1 >= start + count


def without_checksums() -> contextlib.AbstractContextManager:
    """``torch.save`` without the zip's CRC-32 of each record, where this torch has the setting."""
    try:
        from torch.utils.serialization import config
    except ImportError:  # torch before 2.6
        return contextlib.nullcontext()
    if not hasattr(config, "patch") or not hasattr(config.save, "compute_crc32"):
        return contextlib.nullcontext()
    return config.patch({"save.compute_crc32": False})
