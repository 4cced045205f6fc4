"""Weights as raw bytes on the wire (jobcode/rt_arrays.py, rt_wire.raw_task), through NVFlare's own pieces.

The download itself runs in every simulator and POC test; here: what the pieces carry, NVFlare's chunking
of them (``CacheableObject.produce``), msgpack as the messages pack them, and the marking of a task.
"""

from __future__ import annotations

import copy
import platform
import sys
import weakref

import msgpack
import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants
from nvflare.fuel.utils import fobs

from resontech_nb.jobcode import JOBCODE_DIR

if str(JOBCODE_DIR) not in sys.path:  # as in a job's custom/ folder: rt_wire imports its siblings top-level
    sys.path.insert(0, str(JOBCODE_DIR))
import rt_arrays  # noqa: E402
import rt_tensors  # noqa: E402
import rt_wire  # noqa: E402


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    strided = rng.normal(size=(6, 4)).astype(np.float32)[:, ::2]  # not contiguous
    return {
        "fc.weight": rng.normal(size=(300, 70)).astype(np.float32),
        "fc.bias": rng.normal(size=(70,)).astype(np.float64),
        "half": rng.normal(size=(5, 3)).astype(np.float16),
        "strided": strided,
        "bn.num_batches_tracked": np.asarray(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "complex": np.array([1 + 2j, 3 - 1j], dtype=np.complex64),
    }


def download(arrays: dict, chunk: int) -> tuple[dict, int]:
    """Every reply NVFlare's producer makes, packed and unpacked as msgpack, into the consumer; and the replies."""
    source = rt_arrays.RawArrays(arrays, chunk)
    source.num_receivers = 1
    consumer = rt_arrays.RawArrayConsumer()
    state, replies = {}, 0
    while True:
        rc, data, state = source.produce(state, "site-1")
        if data is None:
            break
        replies += 1
        consumer.consume("ref", state, msgpack.unpackb(msgpack.packb(data)))
    consumer.download_completed("ref")
    assert consumer.error is None
    return consumer.result, replies


@pytest.mark.parametrize("chunk", [64, 4096, 1 << 24])
def test_arrays_arrive_equal_in_dtype_shape_and_bits_in_pieces_of_any_size(chunk):
    sent = weights()
    received, replies = download(rt_arrays.mark(sent), chunk)
    assert received.keys() == sent.keys()
    for key, value in sent.items():
        np.testing.assert_array_equal(received[key], value, strict=True)
        assert type(received[key]) is np.ndarray and not received[key].flags.writeable
    assert replies == 1 if chunk == 1 << 24 else replies > 2


def test_a_short_or_corrupt_download_fails_loudly():
    arrays = rt_arrays.mark(weights())
    source = rt_arrays.RawArrays(arrays, 1 << 24)
    items = [source.produce_item(i) for i in range(source.get_item_count())]

    consumer = rt_arrays.RawArrayConsumer()
    consumer.consume_items([bytes(item) for item in items[:-1]], None)
    consumer.download_completed("ref")
    assert consumer.error and consumer.result is None  # ended one array early

    with pytest.raises(ValueError, match="bytes received"):
        rt_arrays.RawArrayConsumer().consume_items([items[0], bytes(items[1])[:-4]], None)
    with pytest.raises(ValueError, match="more arrays"):
        rt_arrays.RawArrayConsumer().consume_items([*items, items[1]], None)


def test_marking_is_a_read_only_view_that_deep_copies_as_itself():
    original = weights()
    marked = rt_arrays.mark({**original, "names": np.array(["a", 1], dtype=object), "lr": 0.1})
    array = marked["fc.weight"]
    assert isinstance(array, rt_arrays.WireArray) and np.shares_memory(array, original["fc.weight"])
    assert not array.flags.writeable and original["fc.weight"].flags.writeable
    assert copy.deepcopy(marked)["fc.weight"] is array  # NVFlare's snapshot of a broadcast task: no 2nd model
    assert type(marked["names"]) is np.ndarray and marked["lr"] == 0.1  # left to NVFlare's own way


def test_in_a_message_without_a_cell_a_marked_array_travels_as_nvflares_npy():
    marked = rt_arrays.mark(weights())
    back = fobs.loads(fobs.dumps(marked))
    for key, value in weights().items():
        np.testing.assert_array_equal(back[key], value, strict=True)


def test_as_tensor_shares_memory_of_read_only_and_0_d_arrays_without_a_warning(recwarn):
    received, _ = download(rt_arrays.mark(weights()), 1 << 24)
    tensor = rt_tensors.as_tensor(received["fc.weight"])
    assert tensor.data_ptr() == received["fc.weight"].ctypes.data
    assert rt_tensors.as_tensor(received["bn.num_batches_tracked"]).shape == ()
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_a_train_task_is_marked_also_inside_scaffolds_collection():
    model, controls = weights(), {"fc.weight": np.ones((300, 70), dtype=np.float32)}
    task = DXO(DataKind.WEIGHTS, model, {"m": 1}).to_shareable()
    task.set_header(AppConstants.CURRENT_ROUND, 3)
    rt_wire.raw_task(task)
    dxo = from_shareable(task)
    assert isinstance(dxo.data["fc.weight"], rt_arrays.WireArray) and dxo.meta == {"m": 1}
    assert task.get_header(AppConstants.CURRENT_ROUND) == 3
    assert type(model["fc.weight"]) is np.ndarray  # the global model itself is not changed

    parts = {
        AppConstants.MODEL_WEIGHTS: DXO(DataKind.WEIGHTS, model),
        AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL: DXO(DataKind.WEIGHT_DIFF, controls),
    }
    task = DXO(DataKind.COLLECTION, parts).to_shareable()
    rt_wire.raw_task(task)
    for part in from_shareable(task).data.values():
        assert isinstance(part.data["fc.weight"], rt_arrays.WireArray)

    metrics = DXO(DataKind.METRICS, {"acc": 0.5}).to_shareable()
    rt_wire.raw_task(metrics)
    assert from_shareable(metrics).data == {"acc": 0.5}


def test_a_site_lets_go_of_the_global_model_once_its_executor_holds_it():
    model = weights()
    freed = weakref.ref(model["fc.weight"])
    task = DXO(DataKind.WEIGHTS, model, {"m": 1}).to_shareable()
    del model
    received, controls = rt_wire.task_weights(task)
    rt_wire.release_task_weights(task)
    assert from_shareable(task).data == {} and from_shareable(task).meta == {"m": 1} and controls is None
    assert freed() is not None  # the executor still has it
    del received
    assert freed() is None  # NVFlare keeps the task while the update goes out, but no longer the model in it


PIECES_CHECK = r"""
import gc, json, sys, time, weakref

sys.path.insert(0, sys.argv[1])
import numpy as np
import rt_arrays
from nvflare.apis.event_type import EventType

gc.disable()  # no collections but the ones rt_pieces makes


class Holder:  # NVFlare's TxTask and StreamFuture, which hold each other and the packed piece they sent
    pass


def sent_piece():
    task, future = Holder(), Holder()
    task.future, future.task = future, task
    task.piece = bytearray(32 << 20)
    return weakref.ref(task)


source = rt_arrays.RawArrays(rt_arrays.mark({"w": np.zeros(1000, np.float32)}), 1 << 20)
source.num_receivers = 1
consumer = rt_arrays.RawArrayConsumer()
out = {}

piece = sent_piece()
source.produce({}, "server")
out["kept_before_the_run"] = piece() is not None  # a full collection would walk every object: not then

rt_arrays.RawWeightsFormat().handle_event(EventType.START_RUN, None)
out["frozen"] = gc.get_freeze_count()

piece = sent_piece()
rc, items, state = source.produce({}, "server")
out["freed_when_the_next_piece_is_served"] = piece() is None
time.sleep(0.1)  # pieces come tens of ms apart; a collection here takes well under 5 ms
piece = sent_piece()
consumer.consume_items(items, None)
out["freed_when_the_next_piece_arrives"] = piece() is None

crowd = [[i] for i in range(2_000_000)]  # what a training function might keep: collections get slow
time.sleep(0.1)
started = time.perf_counter()
piece = sent_piece()
source.produce({}, "server")
out["slow_collection_s"] = time.perf_counter() - started
out["freed_by_the_slow_collection"] = piece() is None
piece = sent_piece()
source.produce({}, "server")  # at once: within 20x the last collection's time
out["skipped_right_after_a_slow_one"] = piece() is not None
print(json.dumps(out))
"""


def test_each_piece_frees_what_the_transport_kept_of_earlier_pieces():
    import json
    import subprocess

    from resontech_nb.jobcode import JOBCODE_DIR as jobcode

    done = subprocess.run(
        [sys.executable, "-c", PIECES_CHECK, str(jobcode)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["kept_before_the_run"] and out["frozen"] > 1000
    assert out["freed_when_the_next_piece_is_served"] and out["freed_when_the_next_piece_arrives"]
    assert out["freed_by_the_slow_collection"] and out["skipped_right_after_a_slow_one"], out


TRIM_CHECK = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import rt_pieces


def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


pieces = [b"x" * 100_000 for _ in range(2000)]  # 200 MB in the malloc heap (under glibc's mmap threshold)
pinned = pieces[-1]  # the heap's top stays in use, so free() alone cannot shrink the heap
del pieces
held = rss_mb()
trimmed = rt_pieces.return_freed_memory()
print(json.dumps({"held": held, "trimmed": trimmed, "after": rss_mb()}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc_trim and Linux's /proc",
)
def test_a_site_gives_the_memory_of_freed_pieces_back_to_the_system():
    import json
    import subprocess

    from resontech_nb.jobcode import JOBCODE_DIR as jobcode

    done = subprocess.run([sys.executable, "-c", TRIM_CHECK, str(jobcode)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["trimmed"] and out["held"] > 180  # freed, but still resident
    assert out["after"] < out["held"] - 150, out


KEEP_CHECK = r"""
import json, resource, sys, threading
sys.path.insert(0, sys.argv[1])
import rt_pieces
import torch

torch.set_num_threads(1)
model = [torch.rand(1024 * 1024) for _ in range(24)]  # 96 MB of 4 MB tensors
kept = rt_pieces.keep_freed_memory(2 * 96 << 20) if sys.argv[2] == "keep" else None
faults, updates = [], []


def talk():  # NVFlare's threads allocate and free their messages meanwhile
    chatter = [bytearray(1000) for _ in range(1000)]
    del chatter


for _ in range(6):  # a site's rounds: the task runs on the site's main thread, a new update of the whole model
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    updates.append([w + 0.01 for w in model])
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    other = threading.Thread(target=talk)
    other.start()
    other.join()
    updates.clear()  # sent: the round's update is freed
print(json.dumps({"kept": kept, "faults": faults, "pages": 24 * 1024 * 1024 * 4 // 4096}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt and Linux's fault counts",
)
def test_a_site_on_the_local_target_reuses_the_pages_of_its_last_update():
    import json
    import subprocess

    from resontech_nb.jobcode import JOBCODE_DIR as jobcode
    from resontech_nb.jobcode import rt_pieces

    done = subprocess.run(
        [sys.executable, "-c", KEEP_CHECK, str(jobcode), "keep"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["kept"] is True
    assert rt_pieces.keep_freed_memory(rt_pieces.KEEP_FROM - 1) is False  # a small model's site changes nothing
    assert out["faults"][0] > 0.9 * out["pages"]  # the first update faults its pages in
    # the later ones reuse them (without the setting the next two fault in about all of them again)
    assert max(out["faults"][1:]) < 0.4 * out["pages"] and sum(out["faults"][2:]) < 0.5 * out["pages"], out


def test_the_model_of_the_final_validation_task_is_marked(tmp_path):
    """NVFlare's GlobalModelEval / CrossSiteModelEval load the model into each validate task just before it goes
    out; ours mark it there (the round's train tasks are marked by RTScatterAndGather)."""
    import rt_workflow
    from nvflare.apis.controller_spec import ClientTask, Task
    from nvflare.apis.shareable import Shareable

    model = weights()

    class Loaded:  # what NVFlare's _before_send_validate_task_cb leaves in the task (cross_site_model_eval.py)
        def _before_send_validate_task_cb(self, client_task, fl_ctx):
            client_task.task.data = DXO(DataKind.WEIGHTS, model).to_shareable()

    class Eval(rt_workflow.RawValidationTask, Loaded):
        pass

    task = ClientTask(None, Task("validate", Shareable()))
    Eval()._before_send_validate_task_cb(task, None)
    assert isinstance(from_shareable(task.task.data).data["fc.weight"], rt_arrays.WireArray)
    assert issubclass(rt_workflow.RTGlobalModelEval, rt_workflow.RawValidationTask)
    assert issubclass(rt_workflow.RTCrossSiteModelEval, rt_workflow.RawValidationTask)
