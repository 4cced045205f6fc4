"""The server's FedAvg sum (jobcode/rt_aggregator.py) against NVFlare's own, on the arrays weights travel as."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.aggregators.weighted_aggregation_helper import WeightedAggregationHelper

from resontech_nb.jobcode import rt_aggregator, rt_arrays, rt_shm


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


BIG_KEYS = ("big", "big64", "fc.weight", "half", "bn.num_batches_tracked")


def big_update(seed: int, keys: tuple[str, ...] = BIG_KEYS) -> dict:
    """Arrays longer than a slice of the in-place sum (``rt_aggregator.SLICE``), with the small ones of ``updates``."""
    rng = np.random.default_rng(100 + seed)
    data = {**updates(seed)}
    data["big"] = rng.normal(size=(3, rt_aggregator.SLICE + 17)).astype(np.float32)  # not a whole number of slices
    data["big"].flags.writeable = False  # as received: a read-only view of the message's bytes
    data["big64"] = rng.normal(size=(2 * rt_aggregator.SLICE + 1,))
    return {k: v for k, v in data.items() if k in keys}


# (contributors, keys each sends): a site failing mid-round sends nothing; one leaving out a key sends the rest
ROUNDS = [
    ({1: None, 2: None, 3: None}),
    ({2: None}),  # sites 1 and 3 failed mid-round
    ({1: None, 3: ("big", "half", "bn.num_batches_tracked")}),  # site 3's update lacks some keys
    ({3: None, 1: None}),
    ({1: None, 2: None}),
    ({2: None, 3: None, 1: None}),
]
SAMPLES = {1: 10.0, 2: 30.0, 3: 1 / 3}


def run_rounds(helper: WeightedAggregationHelper, hold: set[int]) -> list[dict]:
    results = []
    for number, contributors in enumerate(ROUNDS):
        for site, keys in contributors.items():
            update = big_update(10 * number + site) if keys is None else big_update(10 * number + site, keys)
            helper.add(update, SAMPLES[site], f"site-{site}", number)
        result = helper.get_result()
        # a round's model is held (by the next task, a filter, the persistor) or dropped, as the workflow does
        results.append((result, {k: np.array(v, copy=True) for k, v in result.items()}, helper.last_aggregation_stats))
        if number - 1 not in hold and number > 0:
            results[number - 1] = (None, *results[number - 1][1:])
    return results


@pytest.mark.parametrize("weigh", [True, False])
def test_totals_summed_into_reused_buffers_are_nvflares_bit_for_bit_round_after_round(weigh):
    ours = rt_aggregator.InPlaceWeightedSum(exclude_vars="skip", weigh_by_local_iter=weigh)
    theirs = WeightedAggregationHelper(exclude_vars="skip", weigh_by_local_iter=weigh)
    held = {1, 4}
    mine, reference = run_rounds(ours, held), run_rounds(theirs, held)
    assert ours.totals.reused > 0  # buffers of earlier rounds were summed into again
    for number, (ours_then, theirs_then) in enumerate(zip(mine, reference, strict=True)):
        (result, at_the_time, stats), (_, expected, their_stats) = ours_then, theirs_then
        assert sorted(at_the_time) == sorted(expected), number
        assert stats == their_stats, number
        for key, value in expected.items():
            np.testing.assert_array_equal(at_the_time[key], value, strict=True, err_msg=f"round {number} {key}")
            if result is not None:  # a model still held was never written over by a later round
                np.testing.assert_array_equal(result[key], value, strict=True, err_msg=f"held {number} {key}")


def two_site_round(helper: WeightedAggregationHelper, seed: int) -> dict:
    helper.add(big_update(seed), 2.0, "site-1", seed)
    helper.add(big_update(seed + 1), 1.0, "site-2", seed)
    return helper.get_result()


def test_a_buffer_is_reused_only_once_nothing_refers_to_the_model_it_held():
    helper = rt_aggregator.InPlaceWeightedSum()
    round_of = functools.partial(two_site_round, helper)

    first = round_of(0)
    as_sent = torch.from_numpy(np.asarray(first["big"]).view())  # a tensor over a view, as a message or a file holds it
    sent = as_sent.clone()
    del first
    second = round_of(1)  # the first model's buffer is referred to (by ``as_sent``): a new buffer
    address = second["big"].ctypes.data
    third = round_of(2)  # both are held: a third
    assert not np.shares_memory(third["big"], as_sent.numpy())
    assert not np.shares_memory(third["big"], second["big"])
    assert torch.equal(as_sent, sent)  # nothing was summed into a model still referred to
    # 3 arrays a round are summed in place; only "big" of the first model is still referred to
    assert (helper.totals.made, helper.totals.reused) == (3 + 1 + 3, 2)
    del as_sent, second
    fourth = round_of(3)  # the second model is referred to no more: its buffer is summed into again
    assert fourth["big"].ctypes.data == address
    assert helper.totals.reused == 2 + 3
    assert not np.shares_memory(fourth["big"], third["big"])


def test_on_the_local_target_a_total_is_a_shared_buffer_never_reused_while_a_site_reads_it(tmp_path, monkeypatch):
    monkeypatch.setenv(rt_shm.SHM_DIR_ENV, str(tmp_path))  # as the local target's simulator sets it
    round_of = functools.partial(two_site_round, rt_aggregator.InPlaceWeightedSum())

    first = round_of(0)
    address = first["big"].ctypes.data
    task = rt_arrays.mark(first)["big"]  # the next round's task: its file is named, not copied
    reading = rt_shm.take(rt_shm.put(task, str(tmp_path), reuse=True), str(tmp_path))  # a site holds it
    expected = reading.copy()
    del first, task  # the workflow moved on: in this process nothing refers to the model any more
    second = round_of(1)
    second_address = second["big"].ctypes.data
    del second
    third = round_of(2)  # the second model's buffer is free: summed into; the first's is still read
    assert address != second_address and third["big"].ctypes.data == second_address
    assert np.array_equal(reading, expected)  # never summed into while the site could read it
    del reading  # the site is done with it
    fourth = round_of(3)  # the first model's buffer is free again: summed into
    assert fourth["big"].ctypes.data == address
    untouched = two_site_round(WeightedAggregationHelper(), 2)["big"]  # NVFlare's own sum of the third round
    assert np.array_equal(third["big"], untouched)  # the third model, still held, was never written over
