"""Weights through shared memory on the local target (jobcode/rt_shm.py, rt_arrays, targets/local/simulator.py).

The arrays past the inline ones go between the server and the sites as files under /dev/shm instead of NVFlare's
download; nothing else may change: the same global weights, bit for bit, and the same records as with NVFlare's
transport (``RESONTECH_SHM_WEIGHTS=0``). No folder is left under /dev/shm after a job, also when it is aborted or
its simulator is killed, and no process of the job is left either.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
import zipfile
from pathlib import Path

import fl_models
import numpy as np
import pytest
import torch

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.jobcode import rt_arrays, rt_shm
from resontech_nb.targets.local import simulator
from resontech_nb.targets.processes import processes_using


def _files(folder: Path) -> list[str]:
    """The messages' files in ``folder`` (not the pool's)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def _pooled(folder: Path, size: int) -> list[int]:
    pool = folder / f"{rt_shm.POOL_PREFIX}{size}"
    return sorted(os.stat(p).st_ino for p in pool.iterdir()) if pool.is_dir() else []


def test_an_array_comes_back_as_it_went_a_read_only_view_pooled_when_its_last_view_goes(tmp_path):
    arrays = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(24, dtype=np.float64).reshape(4, 6).T,  # not contiguous
        np.array([True, False, True]),
        np.zeros((0, 5), dtype=np.int64),
        np.array(7, dtype=np.int16),
        np.random.default_rng(0).standard_normal(1000).astype(np.float16),
    ]
    for array in arrays:
        reference = rt_shm.put(array, str(tmp_path))
        assert rt_shm.is_reference(reference) and len(reference) < 200
        assert len(_files(tmp_path)) == 1
        inode = os.stat(tmp_path / _files(tmp_path)[0]).st_ino
        back = rt_shm.take(reference, str(tmp_path))
        assert back.dtype == array.dtype and back.shape == array.shape and np.array_equal(back, array)
        assert not back.flags.writeable
        if array.nbytes:
            assert len(_files(tmp_path)) == 1 and _pooled(tmp_path, array.nbytes) == []  # held: never reused
            view = back.reshape(-1)[:1]  # a view keeps the file out of the pool as well
            del back
            rt_shm.release_freed()
            assert _pooled(tmp_path, array.nbytes) == []
            del view
        else:
            del back
        rt_shm.release_freed()  # (what a freed view leaves waits for the process's next call to rt_shm)
        assert _files(tmp_path) == []  # the last view went: the file went to the pool (an empty one is removed)
        assert _pooled(tmp_path, array.nbytes) == ([inode] if array.nbytes else [])
        with pytest.raises(FileNotFoundError):
            rt_shm.take(reference, str(tmp_path))  # taken once
    assert not rt_shm.is_reference(b"\x93NUMPY") and not rt_shm.is_reference(None)
    with pytest.raises(ValueError, match="not a message's file"):
        rt_shm.take(rt_shm.MAGIC + b'{"name": "free-48", "dtype": "<f4", "shape": [12]}', str(tmp_path))


def test_a_pooled_file_is_written_over_by_the_next_array_of_its_size_and_a_held_one_never(tmp_path):
    folder = str(tmp_path)

    def inode(reference: bytes) -> int:
        return os.stat(tmp_path / json_name(reference)).st_ino

    first_sent, held_sent = (rt_shm.put(np.full(1000, v, np.float32), folder) for v in (1.0, 2.0))
    first_inode, held_inode = inode(first_sent), inode(held_sent)
    first, held = rt_shm.take(first_sent, folder), rt_shm.take(held_sent, folder)
    del first
    rt_shm.release_freed()
    assert _pooled(tmp_path, 4000) == [first_inode]
    third = rt_shm.put(np.full(1000, 3.0, np.float32), folder)  # the pooled file, written over
    assert _pooled(tmp_path, 4000) == [] and inode(third) == first_inode
    fourth = rt_shm.put(np.full(1000, 4.0, np.float32), folder)  # the pool is empty and ``held`` is held: a new file
    assert inode(fourth) not in (first_inode, held_inode)
    other = rt_shm.put(np.zeros(10, np.float32), folder)  # another size never takes a pooled file
    assert np.array_equal(held, np.full(1000, 2.0, np.float32))
    for reference, value in ((third, 3.0), (fourth, 4.0), (other, 0.0)):
        assert np.all(rt_shm.take(reference, folder) == value)


def json_name(reference: bytes) -> str:
    return json.loads(reference[len(rt_shm.MAGIC) :])["name"]


def test_a_broadcast_array_is_written_once_while_its_first_file_waits(tmp_path):
    weights = rt_arrays.mark({"w": np.arange(1000, dtype=np.float32)})["w"]  # as in every site's copy of a task
    first, second = (rt_shm.put(weights, str(tmp_path), reuse=True) for _ in range(2))
    names = _files(tmp_path)
    assert len(names) == 2 and len({os.stat(tmp_path / n).st_ino for n in names}) == 1  # one file, two names
    inode = os.stat(tmp_path / names[0]).st_ino
    one, two = (rt_shm.take(reference, str(tmp_path)) for reference in (first, second))
    assert np.array_equal(one, weights) and np.array_equal(two, weights) and not one.flags.writeable
    del one  # one site is done: its name goes, the file stays for the other, out of the pool
    rt_shm.release_freed()
    assert len(_files(tmp_path)) == 1 and _pooled(tmp_path, 4000) == []
    assert rt_shm.put(np.zeros(1000, np.float32), str(tmp_path)) and np.array_equal(two, weights)
    del two
    rt_shm.release_freed()
    assert _pooled(tmp_path, 4000) == [inode]  # the last name went: pooled
    third = rt_shm.put(weights, str(tmp_path), reuse=True)  # its first name is gone: written again, not linked
    assert np.array_equal(rt_shm.take(third, str(tmp_path)), weights)
    other = rt_shm.put(rt_arrays.mark({"w": np.zeros(1000, np.float32)})["w"], str(tmp_path), reuse=True)
    assert not np.array_equal(rt_shm.take(other, str(tmp_path)), weights)
    del weights
    gc.collect()
    rt_shm.release_freed()
    assert rt_shm._sent == {}  # forgotten with the arrays


def test_a_buffer_is_sent_by_name_and_known_to_be_read_until_its_receivers_are_done(tmp_path):
    folder = str(tmp_path)
    total = rt_shm.buffer((10, 100), np.float32, folder)
    total[:] = 5.0
    (own,) = _files(tmp_path)
    assert not rt_shm.linked(total)
    as_sent = rt_arrays.mark({"w": torch.from_numpy(total).numpy()})["w"]  # as the workflow sends it: a view
    references = [rt_shm.put(as_sent, folder, reuse=True) for _ in range(2)]
    assert {os.stat(tmp_path / n).st_ino for n in _files(tmp_path)} == {os.stat(tmp_path / own).st_ino}  # no copy
    assert rt_shm.linked(total)  # sent, not yet taken
    received = [rt_shm.take(reference, folder) for reference in references]
    assert all(np.all(r == 5.0) for r in received) and rt_shm.linked(total)
    del received
    assert not rt_shm.linked(total)  # (which releases what was freed)
    assert _files(tmp_path) == [own] and _pooled(tmp_path, 4000) == []
    part = rt_shm.put(total[1:], folder)  # a part of a buffer is copied
    assert os.stat(tmp_path / json_name(part)).st_ino != os.stat(tmp_path / own).st_ino
    assert np.all(rt_shm.take(part, folder) == 5.0)
    inode = os.stat(tmp_path / own).st_ino
    del total, as_sent
    gc.collect()
    rt_shm.release_freed()
    assert own not in _files(tmp_path) and inode in _pooled(tmp_path, 4000)  # the buffer's file, pooled
    assert rt_shm.shared_copy(np.ones(10, np.float32), folder, least=40).base is not None
    small = np.ones(10, np.float32)
    assert rt_shm.shared_copy(small, folder, least=41) is small


def test_freeing_runs_no_python_code_the_release_waits_for_the_next_call(tmp_path):
    # A release run inside a garbage collection could hand the interpreter to another thread mid-parse, which
    # Python 3.11 fails (gh-106905): a server once failed to decode a site's update that way.
    calls = []
    holder = type("Holder", (), {})()
    rt_shm._when_freed(holder, calls.append, "released")
    del holder
    gc.collect()
    assert calls == [] and len(rt_shm._freed) >= 1
    rt_shm.release_freed()
    assert calls == ["released"] and not rt_shm._freed
    received = rt_shm.take(rt_shm.put(np.ones(100, np.float32), str(tmp_path)), str(tmp_path))
    del received
    assert _files(tmp_path) != []  # freed, not yet released
    rt_shm.put(np.zeros(5, np.float32), str(tmp_path))  # any call releases it first
    assert len(_pooled(tmp_path, 400)) == 1


def test_a_forked_child_freeing_its_copies_pools_nothing_its_parent_reads(tmp_path):
    folder = str(tmp_path)
    total = rt_shm.buffer((1000,), np.float32, folder)
    total[:] = 1.0
    received = rt_shm.take(rt_shm.put(np.full(1000, 2.0, np.float32), folder), folder)
    before = _files(tmp_path)
    child = os.fork()  # as the local target forks its sites
    if child == 0:
        try:
            del total, received
            gc.collect()
            rt_shm.release_freed()
            os._exit(0 if rt_shm._owned == {} and rt_shm._on_free == {} else 3)
        finally:
            os._exit(4)
    assert os.waitpid(child, 0)[1] == 0
    assert _files(tmp_path) == before and _pooled(tmp_path, 4000) == []  # nothing renamed under the parent
    assert np.all(total == 1.0) and np.all(received == 2.0)
    assert rt_shm._owned_path(total) is not None
    del total, received
    rt_shm.release_freed()
    assert _files(tmp_path) == [] and len(_pooled(tmp_path, 4000)) == 2  # the parent's own frees still pool


def test_folders_of_dead_simulators_are_swept_and_live_ones_kept(tmp_path):
    root = str(tmp_path)
    mine = rt_shm.make_dir(os.getpid(), root)
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    dead = rt_shm.make_dir(child, root)
    Path(dead, "left-over").write_bytes(b"x" * 100)
    assert oct(os.stat(mine).st_mode & 0o777) == "0o700"
    assert rt_shm.sweep(root) == [Path(dead)]
    assert os.path.isdir(mine) and not os.path.exists(dead)
    assert rt_shm.dirs_of(os.getpid(), root) == [Path(mine)]
    assert rt_shm.make_dir(1, str(tmp_path / "missing")) is None  # no /dev/shm: NVFlare's transport


def _run(shards, monkeypatch, shared: bool, rounds: int = 3, **federation):
    monkeypatch.setenv(simulator.SHM_ENV, "1" if shared else "0")
    torch.manual_seed(0)
    return submit(
        capture(fl_models.WideNet),
        shards,
        initial_weights=fl_models.WideNet().state_dict(),
        training=TrainingConfig(img_size=16, local_epochs=1, batch_size=8, learning_rate=0.01),
        federation=FederationConfig(
            num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name="shm", **federation
        ),
    )


def _logs(job, side: str) -> str:
    return "\n".join(p.read_text() for p in job.workspace.glob(f"{side}/**/log.txt"))


@pytest.mark.slow
def test_shared_memory_changes_no_weight_and_no_record_and_leaves_nothing(tmp_path, monkeypatch):
    assert fl_models.WideNet().hidden.weight.numel() * 4 > rt_arrays.INLINE_BYTES
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=5)
    jobs = {}
    for shared in (True, False):
        job = _run(shards, monkeypatch, shared)
        assert job.wait(timeout=400) == "FINISHED", job.error
        jobs[shared] = job
    fast, plain = jobs[True].result(), jobs[False].result()
    for name, value in fast.items():
        assert torch.equal(value, plain[name]), name
    records = {
        k: [(r.round, r.global_loss, r.metrics, r.validation, r.clients) for r in j.rounds] for k, j in jobs.items()
    }
    assert records[True] == records[False] and len(records[True]) == 3
    torch.manual_seed(0)
    start = fl_models.WideNet().state_dict()
    assert not all(torch.equal(fast[k], start[k]) for k in start)  # it trained
    for side in ("server", "site-1"):
        assert "arrays through shared memory in /dev/shm/" in _logs(jobs[True], side), side
        assert "RawArrays - INFO - object has been downloaded" not in _logs(jobs[True], side), side
        assert "RawArrays - INFO - object has been downloaded" in _logs(jobs[False], side), side
    for job in jobs.values():
        assert rt_shm.dirs_of(job.pid) == []


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["scaffold", "fedopt"])
def test_shared_memory_changes_nothing_for_the_other_algorithms_and_cross_site_evaluation(
    tmp_path, monkeypatch, algorithm
):
    # SCAFFOLD sends its controls beside the model and sums them in the aggregator's shared buffers too; FedOpt's
    # global model is its optimizer's fresh arrays (copied into pooled files); cross-site evaluation sends every
    # site's last model to the others, and the best model is kept from the validations.
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=7)
    jobs = {}
    for shared in (True, False):
        job = _run(
            shards, monkeypatch, shared, rounds=4, algorithm=algorithm, cross_site_eval=True, select_metric="loss"
        )
        assert job.wait(timeout=400) == "FINISHED", job.error
        jobs[shared] = job
    fast, plain = jobs[True].result(), jobs[False].result()
    for name, value in fast.items():
        assert torch.equal(value, plain[name]), name
    assert [(r.round, r.global_loss, r.metrics, r.validation) for r in jobs[True].rounds] == [
        (r.round, r.global_loss, r.metrics, r.validation) for r in jobs[False].rounds
    ]
    assert jobs[True].cross_site == jobs[False].cross_site and len(jobs[True].cross_site) == 3  # global + 2 sites
    assert jobs[True].best_round == jobs[False].best_round is not None
    best = jobs[True].result("best")
    for name, value in jobs[False].result("best").items():
        assert torch.equal(best[name], value), name
    assert "arrays through shared memory in /dev/shm/" in _logs(jobs[True], "server")
    for job in jobs.values():
        assert rt_shm.dirs_of(job.pid) == []
        models = sorted(job.workspace.glob("server/**/models/*.pt"))  # what the job gives back: zip checksums
        assert [p.name for p in models] == ["best_model.pt", "global_model.pt"]
        assert all(zipfile.ZipFile(p).testzip() is None for p in models)


def _wait_for_folder(job, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = rt_shm.dirs_of(job.pid)
        if folders and job.rounds:
            return folders[0]
        time.sleep(0.1)
    raise AssertionError(f"no round and shared-memory folder for {job.id}: {job.status} {job.error}")


@pytest.mark.slow
@pytest.mark.parametrize("end", ["abort", "kill"])
def test_no_folder_is_left_after_an_abort_or_a_killed_simulator(tmp_path, monkeypatch, end):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=5)
    job = _run(shards, monkeypatch, shared=True, rounds=200)
    folder = _wait_for_folder(job)
    if end == "abort":
        job.abort()
        assert job.status == "ABORTED"
    else:
        os.kill(job.pid, signal.SIGKILL)  # no finally runs: the target cleans up when it sees the end
        assert job.wait(timeout=120) == "FAILED"
    assert not folder.exists() and rt_shm.dirs_of(job.pid) == []
    assert processes_using(job.workspace) == []  # nor its server or sites, which outlive a killed simulator
