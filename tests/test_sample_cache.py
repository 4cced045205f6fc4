"""Decode once (jobcode/rt_samplecache.py): the default loop keeps each decoded, resized image for the whole job,
in memory within ``TrainingConfig.cache_mb`` and in a memory-mapped file in the site's workspace past it.

Nothing else may change: the same batches in the same order, and the same global weights and records, with the
cache on, spilling, or off (``cache_mb=0``), for 1, 3 and 4 channels. That the later epochs really do not decode
is shown by spoiling the images after the first epoch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"
if str(JOBCODE) not in sys.path:
    sys.path.insert(0, str(JOBCODE))

import rt_default_train  # noqa: E402
import rt_samplecache  # noqa: E402
import rt_zip  # noqa: E402

from resontech_nb import FederationConfig, TrainingConfig, capture, make_shard, make_synthetic_shards, submit  # noqa: E402

SIZE = 12
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _shard(folder: Path, mode: str, count: int = 30) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    pairs = []
    for index in range(count):
        size = 20 + index % 3  # not the loop's size: every image is resized
        shape = (size, size) if mode == "L" else (size, size, len(mode))
        path = folder / f"img-{index}.png"
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(path)
        pairs.append((path, index % 3))
    return make_shard(pairs, folder.parent / f"{folder.name}.zip")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("cache")
    return {channels: _shard(base / mode, mode) for channels, mode in MODES.items()}


@pytest.fixture(autouse=True)
def fresh_stores():
    rt_samplecache.clear()
    yield
    rt_samplecache.clear()


def _payload(data: Path, work: Path, channels: int, round_number: int, **hp: object) -> dict:
    hyperparams = {"num_classes": 3, "local_epochs": 2, "batch_size": 4, "img_size": SIZE, "in_channels": channels}
    return {
        "data_path": str(data),
        "round": round_number,
        "site_name": "site-1",
        "hyperparams": {**hyperparams, **hp},
        "device": "cpu",
        "work_dir": str(work),
    }


def _batches(data: Path, work: Path, channels: int, cache_mb: float, rounds: int = 2, epochs: int = 2) -> list:
    """Every batch the default loop's training loader gives, round after round, epoch after epoch."""
    out = []
    for round_number in range(rounds):
        shard = rt_default_train._ShardData(_payload(data, work, channels, round_number, cache_mb=cache_mb))
        shard.channels = channels
        loader = shard.loader(shard.train_rows, shuffle=True)
        for _ in range(epochs):
            out.extend((images.clone(), targets.clone()) for images, targets in loader)
    return out


def _spoil(data: Path) -> None:
    """Nothing left to decode: every image file still there but no longer an image."""
    for path in (data / "images").iterdir():
        path.write_bytes(b"not an image")


def _assert_same(left: list, right: list) -> None:
    assert len(left) == len(right) > 0
    for (images_a, targets_a), (images_b, targets_b) in zip(left, right, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(targets_a, targets_b)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_kept_samples_give_the_same_batches_in_the_same_order(shards, tmp_path, channels):
    data = rt_zip.safe_extract(shards[channels], tmp_path / "data")
    plain = _batches(data, tmp_path, channels, cache_mb=0)
    assert plain[0][0].shape[1:] == (channels, SIZE, SIZE)
    kept = _batches(data, tmp_path, channels, cache_mb=64)
    _assert_same(plain, kept)
    store = rt_samplecache.store_for(data, SIZE, channels, 64, tmp_path)
    assert len(store) == len(list(data.glob("images/*"))) - 6 and store.spilled == 0  # the training rows, once


def test_later_epochs_do_not_decode(shards, tmp_path):
    data = rt_zip.safe_extract(shards[3], tmp_path / "data")
    first = _batches(data, tmp_path, 3, cache_mb=64, rounds=1, epochs=1)
    _spoil(data)
    later = _batches(data, tmp_path, 3, cache_mb=64, rounds=1, epochs=1)
    _assert_same(first, later)
    rt_samplecache.clear()
    with pytest.raises(rt_default_train.rt_manifest.ManifestError, match="cannot read image"):
        _batches(data, tmp_path, 3, cache_mb=0, rounds=1, epochs=1)


def test_past_the_budget_samples_spill_to_an_unlinked_file_in_the_workspace(shards, tmp_path):
    data = rt_zip.safe_extract(shards[3], tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    plain = _batches(data, work, 3, cache_mb=0)
    budget_mb = 5 * SIZE * SIZE * 3 / 2**20  # five samples in memory
    spilling = _batches(data, work, 3, cache_mb=budget_mb)
    _assert_same(plain, spilling)
    store = rt_samplecache.store_for(data, SIZE, 3, budget_mb, work)
    assert store.memory_bytes == 5 * SIZE * SIZE * 3 and store.spilled == len(store) - 5 > 0
    _spoil(data)
    _assert_same(plain[: len(plain) // 2], _batches(data, work, 3, cache_mb=budget_mb, rounds=1))
    assert list(work.iterdir()) == []  # no name: gone with the process, however it ends
    assert any(str(work) in target and "deleted" in target for target in _open_files())
    rt_samplecache.clear()
    assert not any(str(work) in target for target in _open_files())


def _open_files() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own
            pass
    return out


def test_the_cache_setting_is_checked_and_reaches_the_loop():
    assert TrainingConfig().cache_mb == rt_default_train.DEFAULTS["cache_mb"] == 512
    with pytest.raises(Exception, match="cache_mb"):
        TrainingConfig(cache_mb=-1)


class SmallNet(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 16 * 16, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.slow
def test_a_job_gives_the_same_weights_and_records_with_the_cache_spilling_and_off(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=16, seed=6)
    jobs = []
    for cache_mb in (0.004, 0):  # 0.004 MB: five 16 px images in memory, the rest spilled
        torch.manual_seed(0)
        job = submit(
            capture(SmallNet),
            shards,
            initial_weights=SmallNet().state_dict(),
            training=TrainingConfig(img_size=16, local_epochs=2, batch_size=8, learning_rate=0.01, cache_mb=cache_mb),
            federation=FederationConfig(num_rounds=3, min_clients=2, wait_time_after_min_received=0, job_name="cache"),
        )
        assert job.wait(timeout=400) == "FINISHED", job.error
        jobs.append(job)
    kept, plain = (job.result() for job in jobs)
    for name, value in kept.items():
        assert torch.equal(value, plain[name]), name
    records = [[(r.round, r.global_loss, r.metrics, r.validation, r.clients) for r in job.rounds] for job in jobs]
    assert records[0] == records[1] and len(records[0]) == 3
    site_log = "\n".join(p.read_text() for p in jobs[0].workspace.glob("site-1/**/log.txt"))
    assert "sample cache over 0 MB: spilling" in site_log
