"""Server-side FedAvg: NVFlare's weighted aggregator, summing the updates in place with numpy's rounding.

NVFlare's ``InTimeAccumulateWeightedAggregator`` adds each site's update, times its sample count, into a
running total and multiplies the total by ``1 / count`` at the end. Weights travel as numpy arrays, which
take its numpy fallback: a fresh array for every product, every sum and the result, five 180 MB arrays a
round for a 45 M-parameter model and two sites, each paid in page faults. Here float32 and float64 arrays
are summed as tensors over one running buffer per array: the first product is written straight into the
buffer (NVFlare's helper would clone it: fresh pages); each later one is computed a cache-sized slice at a
time into a small scratch buffer and added to the total from there (the update and the total each read once
from memory); the total is scaled in place at the end.

The running buffers are reused from round to round (``ReusedTotals``): the total of a round becomes the
next global model, so a buffer is taken again only once nothing refers to it any more (no array, view or
tensor over it is alive: the model it held has been replaced, sent and saved), else a new one is made. On the
local target the buffers are files in the job's shared-memory folder (``rt_shm.buffer``): the next round's
task then names the total's file instead of copying 180 MB into a new one, and a buffer is also not taken
while a site still holds a name of its file (``rt_shm.linked``). In a
FedAvg job two sets take turns, their pages faulted in once, in the first rounds. Each step rounds as numpy's does
(torch's fused ``add_(v, alpha=w)`` rounds once instead of twice, which made the sum of two updates depend
on the order they arrived in), so the result is bit for bit NVFlare's. Other dtypes (integer buffers,
float16, whose scalar numpy rounds to half first) keep NVFlare's numpy path. NVFlare's helper still does
the bookkeeping (exclusions, counts, history). Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any

import numpy as np
import torch
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import InTimeAccumulateWeightedAggregator
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

if __package__:  # imported from the package on the notebook side
    from . import rt_shm, rt_tensors
else:  # a job's custom/ folder, where every rt_* module is top-level
    import rt_shm
    import rt_tensors

IN_PLACE_DTYPES = (np.float32, np.float64)
_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
SLICE = 1 << 16  # elements a product is computed in at a time: 256 KB of float32, within a core's cache


class ReusedTotals:
    """Buffers for the running totals, one pool per state_dict key; a buffer is reused once nothing refers to it.

    Whatever holds the result (an array over the buffer, a view of it, a tensor from it) holds a reference to
    the buffer's numpy array, so its reference count says whether it is free: nothing is written over a model
    that is still in use, however long the workflow, a filter, a persistor or a message keeps it.
    """

    FREE_REFS = 3  # the pool's list, ``_free_buffer``'s loop variable, ``getrefcount``'s own argument

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep  # buffers kept per key: the total being summed and the global model it replaces
        self._pools: dict[str, list[np.ndarray]] = {}
        self._collected = False  # whether this round has already looked for buffers held only by a cycle
        self.reused = 0  # totals summed into a buffer of an earlier round, and new buffers made (logs, tests)
        self.made = 0

    def take(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        """A tensor over a free buffer of ``shape`` and ``dtype`` (its contents are garbage)."""
        pool = self._pools.setdefault(key, [])
        buffer = self._free_buffer(pool, shape, dtype)
        if buffer is None and pool and not self._collected:
            self._collected = True  # a finished task's message may still hold an old model in a reference cycle
            gc.collect()
            buffer = self._free_buffer(pool, shape, dtype)
        if buffer is not None:
            self.reused += 1
            return torch.from_numpy(buffer)
        shared = rt_shm.directory()
        buffer = rt_shm.buffer(shape, dtype, shared) if shared else np.empty(shape, dtype)
        self.made += 1
        pool.append(buffer)
        del pool[: -self.keep]  # one still held elsewhere lives on with its holder, out of the pool
        return torch.from_numpy(buffer)

    def round_done(self) -> None:
        self._collected = False

    def _free_buffer(self, pool: list[np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        for buffer in pool:
            if buffer.shape == shape and buffer.dtype == dtype and sys.getrefcount(buffer) <= self.FREE_REFS:
                if not rt_shm.linked(buffer):  # no site can still read it (or has yet to)
                    return buffer
        return None


class _Summed:
    """A first contribution already written into its running buffer: the helper's ``clone()`` takes it as is."""

    def __init__(self, total: torch.Tensor) -> None:
        self.total = total

    def clone(self) -> torch.Tensor:
        return self.total

    def add_(self, *_: Any) -> None:  # makes the helper take the tensor path; never called on a first contribution
        raise AssertionError("a first contribution is never added to")

    mul_ = add_


class InPlaceWeightedSum(WeightedAggregationHelper):
    """NVFlare's weighted sum; float32/float64 arrays summed in place, the result as numpy arrays."""

    def __init__(self, exclude_vars: str | None = None, weigh_by_local_iter: bool = True) -> None:
        super().__init__(exclude_vars=exclude_vars, weigh_by_local_iter=weigh_by_local_iter)
        self._scratch: dict[torch.dtype, torch.Tensor] = {}  # one flat buffer per dtype, reused for every array
        self._adding = threading.Lock()  # sites' results may be accepted on several threads at once
        self.totals = ReusedTotals()

    def add(self, data, weight, contributor_name, contribution_round):  # noqa: ANN001 - NVFlare's signature
        # A float32/float64 array is summed here: the first of a key into a reused buffer that the helper takes
        # as its running total, the later ones added to that total (the helper's bookkeeping done as it does
        # it). Other values go to the helper one key a call; its history keeps one entry per update.
        with self._adding:
            weigh, self.weigh_by_local_iter = self.weigh_by_local_iter, False
            start = len(self.history)
            try:
                for key, value in data.items():
                    if self._first(key) and self._summable(value):
                        total = self.totals.take(key, value.shape, value.dtype)
                        source = rt_tensors.as_tensor(value)  # read only: a view of the received bytes
                        if weigh:
                            torch.mul(source, weight, out=total)
                        else:
                            total.copy_(source)
                        product = _Summed(total)
                    elif key in self.total and self._summable(value) and self._running(key, value):
                        self._add(self.total[key], rt_tensors.as_tensor(value), weight if weigh else None)
                        self.key_contribution_counts[key] += 1  # the helper's bookkeeping of a later contribution
                        self.counts[key] = self.counts[key] + weight
                        continue
                    else:
                        product = self._weighted(value, weight if weigh else None)
                    super().add({key: product}, weight, contributor_name, contribution_round)
                if len(self.history) == start:  # every key was added here (or there was none): the history entry
                    super().add({}, weight, contributor_name, contribution_round)
            finally:
                self.weigh_by_local_iter = weigh
                del self.history[start + 1:]

    def _first(self, key: str) -> bool:
        """Whether ``key``'s contribution would start its running total (not excluded, none yet)."""
        return key not in self.total and not (self.exclude_vars is not None and self.exclude_vars.search(key))

    @staticmethod
    def _summable(value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.dtype.type in IN_PLACE_DTYPES and bool(value.ndim)

    def _running(self, key: str, value: np.ndarray) -> bool:
        """Whether ``key``'s running total is a tensor ``value`` can be added to as it is."""
        total = self.total[key]
        fits = isinstance(total, torch.Tensor) and tuple(total.shape) == value.shape
        return fits and total.dtype == _DTYPES[value.dtype.type]

    def _add(self, total: torch.Tensor, source: torch.Tensor, weight: float | None) -> None:
        """``total += source * weight``, each step rounded as numpy's (not fused), a cache-sized slice at a time.

        The product of a slice lands in a small scratch buffer that stays in the CPU's cache, so the update and
        the total are each read once from memory, instead of a whole-model product written out and read back.
        """
        if weight is None:
            total.add_(source)
            return
        flat_total, flat_source = total.view(-1), source.reshape(-1)
        scratch = self._buffer(source.dtype, min(SLICE, flat_source.numel()))
        for start in range(0, flat_source.numel(), SLICE):
            part = flat_source[start : start + SLICE]
            product = scratch[: part.numel()]
            torch.mul(part, weight, out=product)
            flat_total[start : start + SLICE].add_(product)

    def _weighted(self, value: Any, weight: float | None) -> Any:
        """``value * weight`` as numpy rounds it; a float32/float64 product lands in the scratch buffer."""
        if not self._summable(value):
            return value * weight if weight is not None else value
        source = rt_tensors.as_tensor(value)  # read only: updates arrive as read-only views of the received bytes
        if weight is None:  # the helper clones or adds the update itself, as numpy's path does
            return source
        scratch = self._buffer(source.dtype, source.numel()).view(source.shape)
        return torch.mul(source, weight, out=scratch)

    def _buffer(self, dtype: torch.dtype, size: int) -> torch.Tensor:
        buffer = self._scratch.get(dtype)
        if buffer is None or buffer.numel() < size:
            buffer = self._scratch[dtype] = torch.empty(size, dtype=dtype)
        return buffer[:size]

    def get_result(self):
        with self._adding:  # scale in place as numpy's fallback does (times 1/count); the helper then divides by 1
            for key, total in self.total.items():
                if isinstance(total, torch.Tensor):
                    total.mul_(1.0 / self.counts[key])
                    self.counts[key] = 1
            result = super().get_result()
            self.totals.round_done()
        return {key: value.numpy() if isinstance(value, torch.Tensor) else value for key, value in result.items()}


class RTWeightedAggregator(InTimeAccumulateWeightedAggregator):
    """``InTimeAccumulateWeightedAggregator`` (same arguments) whose sums run in place."""

    REUSE_NOTE = "running totals summed into reused buffers"  # logged once a run, when it first happens

    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        result = super().aggregate(fl_ctx)
        if not getattr(self, "_reuse_noted", False):
            reused = sum(
                part.aggregation_helper.totals.reused
                for part in self.dxo_aggregators.values()
                if isinstance(part.aggregation_helper, InPlaceWeightedSum)
            )
            if reused:
                self._reuse_noted = True
                self.log_info(fl_ctx, f"{self.REUSE_NOTE}: {reused} arrays this round")
        return result

    def _initialize(self, aggregation_weights, exclude_vars, expected_data_kind):  # noqa: ANN001 - at START_RUN
        super()._initialize(aggregation_weights, exclude_vars, expected_data_kind)
        for key, part in self.dxo_aggregators.items():
            part.aggregation_helper = InPlaceWeightedSum(
                exclude_vars=self.exclude_vars[key], weigh_by_local_iter=self._weigh_by_local_iter
            )
