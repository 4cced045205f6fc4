"""Server-side FedAvg: NVFlare's weighted aggregator, summing the updates in place with numpy's rounding.

NVFlare's ``InTimeAccumulateWeightedAggregator`` adds each site's update, times its sample count, into a
running total and multiplies the total by ``1 / count`` at the end. Weights travel as numpy arrays, which
take its numpy fallback: a fresh array for every product, every sum and the result, five 180 MB arrays a
round for a 45 M-parameter model and two sites, each paid in page faults. Here float32 and float64 arrays
are summed as tensors over one running buffer per array: each product goes into a reused scratch buffer,
is added to the total, and the total is scaled in place at the end. Each step rounds as numpy's does
(torch's fused ``add_(v, alpha=w)`` rounds once instead of twice, which made the sum of two updates depend
on the order they arrived in), so the result is bit for bit NVFlare's. Other dtypes (integer buffers,
float16, whose scalar numpy rounds to half first) keep NVFlare's numpy path. NVFlare's helper still does
the bookkeeping (exclusions, counts, history). Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import InTimeAccumulateWeightedAggregator
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

if __package__:  # imported from the package on the notebook side
    from . import rt_tensors
else:  # a job's custom/ folder, where every rt_* module is top-level
    import rt_tensors

IN_PLACE_DTYPES = (np.float32, np.float64)


class InPlaceWeightedSum(WeightedAggregationHelper):
    """NVFlare's weighted sum; float32/float64 arrays summed in place, the result as numpy arrays."""

    def __init__(self, exclude_vars: str | None = None, weigh_by_local_iter: bool = True) -> None:
        super().__init__(exclude_vars=exclude_vars, weigh_by_local_iter=weigh_by_local_iter)
        self._scratch: dict[torch.dtype, torch.Tensor] = {}  # one flat buffer per dtype, reused for every array
        self._adding = threading.Lock()  # sites' results may be accepted on several threads at once

    def add(self, data, weight, contributor_name, contribution_round):  # noqa: ANN001 - NVFlare's signature
        # The helper is handed the products (it clones the first, add_s the others): one array per call,
        # so that one scratch buffer serves them all; its history keeps one entry per update.
        with self._adding:
            weigh, self.weigh_by_local_iter = self.weigh_by_local_iter, False
            start = len(self.history)
            try:
                for key, value in data.items():
                    product = self._weighted(value, weight if weigh else None)
                    super().add({key: product}, weight, contributor_name, contribution_round)
                if not data:
                    super().add({}, weight, contributor_name, contribution_round)
            finally:
                self.weigh_by_local_iter = weigh
                del self.history[start + 1:]

    def _weighted(self, value: Any, weight: float | None) -> Any:
        """``value * weight`` as numpy rounds it; a float32/float64 product lands in the scratch buffer."""
        if not (isinstance(value, np.ndarray) and value.dtype.type in IN_PLACE_DTYPES and value.ndim):
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
        return {key: value.numpy() if isinstance(value, torch.Tensor) else value for key, value in result.items()}


class RTWeightedAggregator(InTimeAccumulateWeightedAggregator):
    """``InTimeAccumulateWeightedAggregator`` (same arguments) whose sums run in place."""

    def _initialize(self, aggregation_weights, exclude_vars, expected_data_kind):  # noqa: ANN001 - at START_RUN
        super()._initialize(aggregation_weights, exclude_vars, expected_data_kind)
        for key, part in self.dxo_aggregators.items():
            part.aggregation_helper = InPlaceWeightedSum(
                exclude_vars=self.exclude_vars[key], weigh_by_local_iter=self._weigh_by_local_iter
            )
