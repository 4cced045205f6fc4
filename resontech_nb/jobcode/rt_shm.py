"""Weights through shared memory between the processes of one machine: the local target's server and sites.

Shipped in the job's ``custom/`` folder (used by ``rt_arrays``); plain Python + numpy, no resontech_nb import.

On the local target every process of a job runs on this machine, so a message's large arrays need not cross
NVFlare's sockets in pieces: the sender writes each array's bytes into a file of its own in a folder under
``/dev/shm`` (memory, not disk) and the message carries only the file's name, dtype and shape (a few dozen
bytes, inside the message, where NVFlare's own encoding would put the array). The receiver opens the file, maps
it read-only with its pages populated in one go, and unlinks it at once: the arrays it gets are read-only views
of the mapping (no copy), and the memory goes back to the system when the last of them is freed, or when the
process ends, however it ends. The arrays' bytes are the sender's bytes, so results are bit for bit those of
NVFlare's transport.

The folder is named by ``SHM_DIR_ENV``, which only the local target's simulator launcher sets (deployments
never see it and keep NVFlare's transport); it is removed when the simulator ends, and by the local target
when a job ends, is aborted or its simulator has died (``remove_dir``, ``sweep``). A file a receiver never
took (a site that died before reading its task) goes with the folder. Only messages are written here: FOBS
encodings without a cell (files NVFlare writes to disk) keep NVFlare's encoding.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import shutil
import threading
import uuid
import weakref
from pathlib import Path

import numpy as np

SHM_DIR_ENV = "RT_SHM_DIR"  # the job's folder under /dev/shm (job plumbing, not a setting); unset: NVFlare's transport
SHM_ROOT = "/dev/shm"
DIR_PREFIX = "resontech-weights-"
MAGIC = b"RTSHM1\n"
_counter = itertools.count()
_sent: dict[int, tuple[weakref.ref, str]] = {}  # id(array) -> (the array, the file its first message got)
_sent_lock = threading.Lock()


def directory() -> str | None:
    """The job's shared-memory folder when weights travel through it in this process, else None."""
    path = os.environ.get(SHM_DIR_ENV)
    return path if path and os.path.isdir(path) else None


def put(array: np.ndarray, folder: str, reuse: bool = False) -> bytes:
    """Writes ``array``'s bytes to a new file in ``folder``; returns what the message carries instead.

    With ``reuse`` the array is one that cannot change while it lives (a marked, read-only ``rt_arrays.WireArray``,
    the same object in every site's copy of a broadcast task): a later message gets a hard link to the file of the
    first instead of a copy of its bytes, while that file is still there (its receiver has not taken it yet: the
    sites of a broadcast ask for their task at about the same time); else the bytes are written again. Nothing
    is kept for that: each file goes when its receiver has taken it.
    """
    name = f"{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
    path = os.path.join(folder, name)
    header = MAGIC + json.dumps({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}).encode()
    if reuse:
        with _sent_lock:
            entry = _sent.get(id(array))
            if entry is not None and entry[0]() is array:
                try:
                    os.link(entry[1], path)
                    return header
                except OSError:  # taken already (or the folder is gone): write it again
                    pass
    contiguous = array if array.flags.c_contiguous else np.array(array, order="C")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(contiguous.reshape(-1).view(np.uint8))
        written = 0
        while written < len(view):
            written += os.write(fd, view[written : written + (1 << 30)])
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    if reuse:
        with _sent_lock:
            _sent[id(array)] = (weakref.ref(array), path)
        weakref.finalize(array, _forget, id(array), path)
    return header


def _forget(key: int, path: str) -> None:
    with _sent_lock:
        entry = _sent.get(key)
        if entry is not None and entry[1] == path:
            del _sent[key]


def is_reference(data: object) -> bool:
    return isinstance(data, (bytes, bytearray)) and bytes(data[: len(MAGIC)]) == MAGIC


def take(data: bytes, folder: str | None = None) -> np.ndarray:
    """The array a reference names: a read-only view of its file, mapped and unlinked."""
    header = json.loads(bytes(data[len(MAGIC) :]))
    folder = folder or directory()
    if not folder or "/" in header["name"]:
        raise ValueError(f"a shared-memory array arrived but {SHM_DIR_ENV} names no folder in this process")
    path = os.path.join(folder, header["name"])
    dtype = np.dtype(header["dtype"])
    shape = tuple(int(n) for n in header["shape"])
    size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        if size == 0:
            empty = np.empty(shape, dtype)
            empty.flags.writeable = False
            return empty
        if os.fstat(fd).st_size != size:
            raise ValueError(f"shared-memory array {header['name']}: {os.fstat(fd).st_size} bytes, {size} announced")
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return np.frombuffer(mapped, dtype=dtype).reshape(shape)


def make_dir(owner_pid: int, root: str = SHM_ROOT) -> str | None:
    """A new folder for one simulator's weights (mode 0700), named by its process; None when ``root`` is not
    there or not writable (then NVFlare's transport is used)."""
    if not os.path.isdir(root) or not os.access(root, os.W_OK):
        return None
    path = os.path.join(root, f"{DIR_PREFIX}{owner_pid}-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(path, 0o700)
    except OSError:
        return None
    return path


def remove_dir(path: str | os.PathLike | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def dirs_of(pid: int, root: str = SHM_ROOT) -> list[Path]:
    """The folders a simulator process ``pid`` made."""
    base = Path(root)
    return sorted(base.glob(f"{DIR_PREFIX}{int(pid)}-*")) if base.is_dir() else []


def sweep(root: str = SHM_ROOT) -> list[Path]:
    """Removes the folders whose simulator is gone (it crashed, or was killed with no one watching); returns them."""
    base = Path(root)
    if not base.is_dir():
        return []
    removed = []
    for path in base.glob(f"{DIR_PREFIX}*"):
        try:
            pid = int(path.name[len(DIR_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if not _alive(pid):
            remove_dir(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie holds its pid but runs nothing
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
