"""Weights through shared memory on the local target (jobcode/rt_shm.py, rt_arrays, targets/local/simulator.py).

The arrays past the inline ones go between the server and the sites as files under /dev/shm instead of NVFlare's
download; nothing else may change: the same global weights, bit for bit, and the same records as with NVFlare's
transport (``RESONTECH_SHM_WEIGHTS=0``). No folder is left under /dev/shm after a job, also when it is aborted or
its simulator is killed, and no process of the job is left either.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path

import fl_models
import numpy as np
import pytest
import torch

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.jobcode import rt_arrays, rt_shm
from resontech_nb.targets.local import simulator
from resontech_nb.targets.processes import processes_using


def test_an_array_comes_back_as_it_went_a_read_only_view_of_an_unlinked_file(tmp_path):
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
        assert len(list(tmp_path.iterdir())) == 1
        back = rt_shm.take(reference, str(tmp_path))
        assert list(tmp_path.iterdir()) == []  # unlinked on arrival: gone with the last view of it
        assert back.dtype == array.dtype and back.shape == array.shape and np.array_equal(back, array)
        assert not back.flags.writeable
    assert not rt_shm.is_reference(b"\x93NUMPY") and not rt_shm.is_reference(None)
    with pytest.raises(FileNotFoundError):
        rt_shm.take(reference, str(tmp_path))  # taken once


def test_a_broadcast_array_is_written_once_while_its_first_file_waits(tmp_path):
    weights = rt_arrays.mark({"w": np.arange(1000, dtype=np.float32)})["w"]  # as in every site's copy of a task
    first, second = (rt_shm.put(weights, str(tmp_path), reuse=True) for _ in range(2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and len({os.stat(tmp_path / n).st_ino for n in names}) == 1  # one file, two names
    for reference in (first, second):
        back = rt_shm.take(reference, str(tmp_path))
        assert np.array_equal(back, weights) and not back.flags.writeable
    assert list(tmp_path.iterdir()) == []  # nothing kept
    third = rt_shm.put(weights, str(tmp_path), reuse=True)  # the first file was taken: written again
    assert np.array_equal(rt_shm.take(third, str(tmp_path)), weights)
    other = rt_shm.put(rt_arrays.mark({"w": np.zeros(1000, np.float32)})["w"], str(tmp_path), reuse=True)
    assert not np.array_equal(rt_shm.take(other, str(tmp_path)), weights)
    del weights
    gc.collect()
    assert rt_shm._sent == {}  # forgotten with the arrays


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


def _run(shards, monkeypatch, shared: bool, rounds: int = 3):
    monkeypatch.setenv(simulator.SHM_ENV, "1" if shared else "0")
    torch.manual_seed(0)
    return submit(
        capture(fl_models.WideNet),
        shards,
        initial_weights=fl_models.WideNet().state_dict(),
        training=TrainingConfig(img_size=16, local_epochs=1, batch_size=8, learning_rate=0.01),
        federation=FederationConfig(num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name="shm"),
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
