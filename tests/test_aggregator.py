"""The server's FedAvg sum (jobcode/rt_aggregator.py) against NVFlare's own, on the arrays weights travel as."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

from resontech_nb.jobcode import rt_aggregator


def updates(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frozen = rng.normal(size=(3,)).astype(np.float32)
    frozen.flags.writeable = False  # as an array decoded straight from a message buffer may be
    return {
        "fc.weight": rng.normal(size=(4, 5)).astype(np.float32),
        "fc.bias": frozen,
        "half": rng.normal(size=(2,)).astype(np.float16),
        "double": rng.normal(size=(3, 2)).astype(np.float64),
        "bn.num_batches_tracked": np.asarray(7 + seed, dtype=np.int64),
        "skip.me": rng.normal(size=(2,)).astype(np.float32),
    }


WEIGHTS = ((1, 10.0), (2, 30.0), (3, 5.0), (4, 1 / 3))


def summed(helper: WeightedAggregationHelper, order=WEIGHTS) -> dict:
    for seed, weight in order:
        helper.add(updates(seed), weight, f"site-{seed}", 0)
    return helper.get_result()


@pytest.mark.parametrize("weigh", [True, False])
def test_the_in_place_sum_is_nvflares_weighted_average_bit_for_bit(weigh):
    ours = summed(rt_aggregator.InPlaceWeightedSum(exclude_vars="skip", weigh_by_local_iter=weigh))
    theirs = summed(WeightedAggregationHelper(exclude_vars="skip", weigh_by_local_iter=weigh))
    assert sorted(ours) == sorted(theirs) == ["bn.num_batches_tracked", "double", "fc.bias", "fc.weight", "half"]
    for key, value in theirs.items():
        assert type(ours[key]) is type(value), key  # a 0-d sum is a numpy scalar on both paths
        assert np.asarray(ours[key]).dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(ours[key], value, strict=True, err_msg=key)
    if weigh:
        expected = sum(updates(s)["fc.weight"].astype(np.float64) * w for s, w in WEIGHTS) / sum(w for _, w in WEIGHTS)
        np.testing.assert_allclose(ours["fc.weight"], expected, rtol=1e-6)


def test_two_updates_sum_to_the_same_bits_in_either_order():
    # POC and the simulator deliver the sites' updates in different orders; their models must still agree.
    first = summed(rt_aggregator.InPlaceWeightedSum(), WEIGHTS[:2])
    second = summed(rt_aggregator.InPlaceWeightedSum(), WEIGHTS[1::-1])
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], strict=True, err_msg=key)


def test_the_in_place_sum_leaves_the_updates_alone_and_keeps_one_history_entry_per_update():
    helper = rt_aggregator.InPlaceWeightedSum()
    first, second = updates(1), updates(2)
    before = {k: v.copy() for k, v in first.items()}
    helper.add(first, 1.0, "site-1", 0)
    helper.add(second, 3.0, "site-2", 0)
    assert [entry["contributor_name"] for entry in helper.history] == ["site-1", "site-2"]
    total = helper.total["fc.weight"]
    result = helper.get_result()
    for key, value in before.items():
        np.testing.assert_array_equal(first[key], value)
    assert np.shares_memory(result["fc.weight"], total.numpy())  # the running total is the result
    assert not np.shares_memory(result["fc.weight"], first["fc.weight"])


@pytest.mark.parametrize("kind", ["WEIGHTS", {"_model_weights_": "WEIGHT_DIFF", "scaffold_c_diff": "WEIGHT_DIFF"}])
def test_every_part_of_the_aggregator_sums_in_place(kind):
    aggregator = rt_aggregator.RTWeightedAggregator(expected_data_kind=kind, exclude_vars="skip")
    aggregator.handle_event(EventType.START_RUN, FLContext())
    assert len(aggregator.dxo_aggregators) == (1 if kind == "WEIGHTS" else 2)
    for part in aggregator.dxo_aggregators.values():
        assert isinstance(part.aggregation_helper, rt_aggregator.InPlaceWeightedSum)
        assert part.aggregation_helper.exclude_vars.pattern == "skip"
