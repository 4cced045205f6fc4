"""Server-side FedAvg: NVFlare's weighted aggregator, summing the updates in place.

NVFlare's ``InTimeAccumulateWeightedAggregator`` adds each site's update, times its sample count, into a
running total. For torch tensors its helper does this in place (``mul``, ``add_``, ``div_``); numpy arrays,
which is how weights travel, take its fallback, which makes a new array for every product and every sum:
for a 180 MB model, five fresh 180 MB arrays and a full pass over each per round with two sites. Here each
array is seen as a tensor over the same memory on the way in and the result as an array on the way out, so
the sum is one pass per update into one buffer. The arithmetic (weights, exclusions, the final division) is
NVFlare's own. Shipped in the job's ``custom/`` folder; plain NVFlare + torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import InTimeAccumulateWeightedAggregator
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper


def as_tensor(value: Any) -> Any:
    """A floating-point numpy array as a CPU tensor sharing its memory; anything else (integer buffers, whose
    numpy average is float64, torch's float32) as it is."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        if not value.flags.writeable:  # never written (the first update is multiplied into a new buffer)
            value = np.array(value)  # torch does not view read-only memory
        return torch.from_numpy(value)
    return value


def as_array(value: Any) -> Any:
    return value.numpy() if isinstance(value, torch.Tensor) else value


class InPlaceWeightedSum(WeightedAggregationHelper):
    """NVFlare's weighted sum, fed tensors over the updates' own memory; the result as numpy arrays."""

    def add(self, data, weight, contributor_name, contribution_round):
        tensors = {key: as_tensor(value) for key, value in data.items()}
        super().add(tensors, weight, contributor_name, contribution_round)

    def get_result(self):
        return {key: as_array(value) for key, value in super().get_result().items()}


class RTWeightedAggregator(InTimeAccumulateWeightedAggregator):
    """``InTimeAccumulateWeightedAggregator`` (same arguments) whose sums run in place."""

    def _initialize(self, aggregation_weights, exclude_vars, expected_data_kind):  # at START_RUN
        super()._initialize(aggregation_weights, exclude_vars, expected_data_kind)
        for key, part in self.dxo_aggregators.items():
            part.aggregation_helper = InPlaceWeightedSum(
                exclude_vars=self.exclude_vars[key], weigh_by_local_iter=self._weigh_by_local_iter
            )
