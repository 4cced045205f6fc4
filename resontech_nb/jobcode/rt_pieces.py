"""Pieces of weights freed as soon as they have been sent or received, instead of when Python's collector runs.

NVFlare's streaming leaves every message it sends or receives in a reference cycle (its ``TxTask`` and
``StreamFuture`` hold each other, and through them the whole packed message). Reference counting never frees
a cycle; Python's cyclic collector does, but it runs after so many new objects, not bytes, and a transfer of
weights makes few objects and many bytes. A site sending its 180 MB update held all of its 32 MB pieces at
once: the packed pieces alone were 239 MB of a 721 MB peak (memray, 45 M-parameter model).

So each process collects after every piece it serves or receives. A full collection of a process with torch
and NVFlare loaded walks about 200,000 objects (30-50 ms here); what was alive when the job's run started (the
interpreter, modules, the job's components) is frozen first (``gc.freeze``), after which a collection walks
only what the run made since: 0.5 ms a piece in a 45 M job. Frozen objects are still freed by reference
counting; only a cycle among them would stay. Should a collection still be slow (a training function that
keeps millions of Python objects), pieces skip it, so that collecting never takes more than 1/``BUDGET`` of
the time.

Freed is not yet given back: glibc's malloc keeps the memory of freed pieces for later allocations, and a
piece freed in the middle of its heap stays resident. A site hands it back to the system once a round, when
the global model has arrived and before its training allocates the update (``return_freed_memory``): a 45 M
site's peak fell by about 30 MB, at no measurable cost a round. (Trimming after every piece saved 90 MB but
made rounds 50 % slower: the next piece faults its pages in again.) On the local target weights come
through shared memory, not pieces, and nothing of them lies in the heap: there a site does the opposite
(``keep_freed_memory``), so that each round's update reuses the pages of the last.

Shipped in the job's ``custom/`` folder; plain Python.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import threading
import time
from collections.abc import Callable

BUDGET = 20  # collections take at most 1/20 of the wall time between them

_lock = threading.Lock()
_frozen = False
_next_collection = 0.0


def freeze_startup_objects() -> None:
    """Collect, then exempt everything alive now from later collections (once per process)."""
    global _frozen
    with _lock:
        if _frozen:
            return
        gc.collect()
        gc.freeze()
        _frozen = True


def piece_done() -> None:
    """A piece of weights went out or came in: free what the transport left of earlier pieces."""
    global _next_collection
    if not _frozen:  # a process whose run has not started: a full collection would walk everything
        return
    started = time.monotonic()
    if started < _next_collection:
        return
    gc.collect()
    took = time.monotonic() - started
    _next_collection = started + took * BUDGET


def return_freed_memory() -> bool:
    """Free what the transport left, then give the malloc heap's free pages back to the system.

    Returns whether there was something to give them back with (glibc's ``malloc_trim``; elsewhere only the
    collection happens)."""
    if _frozen:
        gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def keep_freed_memory(nbytes: int) -> bool:
    """Let glibc's malloc keep about ``nbytes`` of freed memory for the next allocations instead of handing it back.

    On the local target a site's training allocates a new update every round (e.g. ``{k: v + 0.01 ...}``: 180 MB
    for a 45 M-parameter model). glibc maps blocks past its mmap threshold afresh each time (the threshold adapts
    only after some rounds) and hands a heap's freed top back past its trim threshold, so a round faulted in
    fresh, zeroed pages for most of those bytes: 40-130 ms a round instead of 20-30 ms for that model. Here
    blocks up to 32 MB come from the heap, and up to ``nbytes`` of freed memory stays in the process: its resident
    size stays at its peak between rounds, the peak itself does not grow. Below ``KEEP_FROM`` bytes nothing
    changes (a few thousand faults a round; 64 small sites would hold more memory for nothing). Returns whether it
    did (glibc only; elsewhere nothing changes).
    """
    if nbytes < KEEP_FROM:
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    trim = min(int(nbytes), 1 << 31)
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))


KEEP_FROM = 64 << 20  # keep_freed_memory's bytes (twice a 32 MB model): less is not worth keeping between rounds
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None under another C library (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
