"""Decode once: the decoded, resized samples (uint8) of a shard, kept by a site's process for the whole job.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_samplecache``; the notebook side imports it as ``resontech_nb.jobcode.rt_samplecache``. It needs only
the standard library and numpy, and it never imports resontech_nb.

A site keeps its process from the first round to the last, so the default loop decodes and resizes each image
once: ``ManifestDataset`` asks ``SampleStore.get`` before it decodes and hands what it decoded to ``put``. The
samples stay in memory up to a budget (``TrainingConfig.cache_mb``); past it they go to a memory-mapped file in
the site's workspace. That file is unlinked as soon as it is made (``tempfile.TemporaryFile``), so it is gone
when the process ends, whether the job finished, was aborted or crashed. Only the decoded pixels are kept: the
float conversion, the normalisation and any augmentation run on every batch of every epoch.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 512

_STORES: dict[tuple[str, int, int], SampleStore] = {}
_LOCK = threading.Lock()


class SampleStore:
    """Decoded samples of one shape (``channels`` x ``img_size`` x ``img_size``, uint8), keyed by the sample's uri.

    The first ``budget_bytes`` worth live in memory; the rest are written to an unlinked file in ``spill_dir``
    and read back through one read-only memory map (remapped only when the file has grown since).
    """

    def __init__(self, shape: tuple[int, int, int], budget_bytes: int, spill_dir: str | Path | None) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.item_bytes = int(np.prod(self.shape))
        self.budget_bytes = max(0, int(budget_bytes))
        self.spill_dir = str(spill_dir) if spill_dir else None
        self._memory: dict[str, np.ndarray] = {}
        self._slots: dict[str, int] = {}
        self._file = None
        self._map: mmap.mmap | None = None
        self._mapped = 0
        self._lock = threading.Lock()

    @property
    def memory_bytes(self) -> int:
        return len(self._memory) * self.item_bytes

    @property
    def spilled(self) -> int:
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._memory) + len(self._slots)

    def get(self, key: str) -> np.ndarray | None:
        """The decoded sample (read-only), or None when it has not been decoded yet."""
        array = self._memory.get(key)
        if array is not None:
            return array
        slot = self._slots.get(key)
        if slot is None:
            return None
        with self._lock:
            if slot >= self._mapped:
                self._remap()
            assert self._map is not None
            return np.frombuffer(self._map, np.uint8, self.item_bytes, slot * self.item_bytes).reshape(self.shape)

    def put(self, key: str, array: np.ndarray) -> None:
        """Keep ``array`` (uint8, this store's shape) under ``key``: in memory within the budget, else spilled."""
        if array.dtype != np.uint8 or array.shape != self.shape:
            raise ValueError(f"a sample of shape {array.shape} ({array.dtype}) does not fit a {self.shape} uint8 store")
        if key in self._memory or key in self._slots:
            return
        if self.memory_bytes + self.item_bytes <= self.budget_bytes:
            kept = np.ascontiguousarray(array).copy()
            kept.flags.writeable = False
            self._memory[key] = kept
            return
        with self._lock:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="rt_samples_", dir=self.spill_dir)
                log.info("sample cache over %d MB: spilling to a file in %s", self.budget_bytes >> 20, self.spill_dir)
            slot = len(self._slots)
            os.pwrite(self._file.fileno(), np.ascontiguousarray(array).tobytes(), slot * self.item_bytes)
            self._slots[key] = slot

    def _remap(self) -> None:
        # the old map is left to the collector: arrays handed out may still look into it
        length = len(self._slots) * self.item_bytes
        self._map = mmap.mmap(self._file.fileno(), length, prot=mmap.PROT_READ)
        self._mapped = len(self._slots)

    def close(self) -> None:
        with self._lock:
            if self._map is not None:
                try:
                    self._map.close()
                except BufferError:  # an array handed out still looks into it: the collector closes it later
                    pass
                self._map = None
            if self._file is not None:
                self._file.close()
                self._file = None
            self._memory.clear()
            self._slots.clear()
            self._mapped = 0


def store_for(
    root_dir: str | Path, img_size: int, channels: int, cache_mb: float, spill_dir: str | Path | None
) -> SampleStore | None:
    """The process's store for a shard at one size and channel count; None when ``cache_mb`` is 0 (decode every
    epoch). The budget and spill folder of the first call stay with the store."""
    if not cache_mb or cache_mb <= 0:
        return None
    key = (str(Path(root_dir).resolve()), int(img_size), int(channels))
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            store = SampleStore((int(channels), int(img_size), int(img_size)), int(cache_mb * 2**20), spill_dir)
            _STORES[key] = store
        return store


def clear() -> None:
    """Drop every store of this process (their spill files go with them)."""
    with _LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()
