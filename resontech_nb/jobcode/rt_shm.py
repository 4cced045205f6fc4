"""Weights through shared memory between the processes of one machine: the local target's server and sites.

Shipped in the job's ``custom/`` folder (used by ``rt_arrays``); plain Python + numpy, no resontech_nb import.

On the local target every process of a job runs on this machine, so a message's large arrays need not cross
NVFlare's sockets in pieces: the sender writes each array's bytes into a file of its own in a folder under
``/dev/shm`` (memory, not disk) and the message carries only the file's name, dtype and shape (a few dozen
bytes, inside the message, where NVFlare's own encoding would put the array). The receiver opens the file and
maps it read-only with its pages populated in one go: the arrays it gets are read-only views of the mapping (no
copy). The arrays' bytes are the sender's bytes, so results are bit for bit those of NVFlare's transport.

Files are recycled: writing 180 MB into a new file costs the kernel fresh, zeroed pages (0.09 s here), writing
over an existing one only the copy (0.035 s). Once the last view of a taken file is freed, the receiver moves
the file into the folder's pool (``free-<bytes>/``) instead of deleting it (at its next call here: nothing runs
while memory is freed, ``_when_freed``), and a later ``put`` of an array of
that size, in any process of the job, claims a pooled file (an atomic rename: one claimant wins) and writes
over it. A file goes to the pool only when no process can still read it: the receiver first renames its own
name away (no new link to it can be made from then on), and pools the file only when that was its last name
(a broadcast's file has one name per site; the other sites' names are dropped as they finish). The pool holds
no more files than were in use at once; it goes with the folder at the end of the job.

The folder is named by ``SHM_DIR_ENV``, which only the local target's simulator launcher sets (deployments
never see it and keep NVFlare's transport); it is removed when the simulator ends, and by the local target
when a job ends, is aborted or its simulator has died (``remove_dir``, ``sweep``). A file a receiver never
took (a site that died before reading its task) goes with the folder. Only messages are written here: FOBS
encodings without a cell (files NVFlare writes to disk) keep NVFlare's encoding.
"""

from __future__ import annotations

import collections
import itertools
import json
import mmap
import os
import shutil
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

# the job's own folder under /dev/shm (job plumbing, not a setting); unset: NVFlare's transport
SHM_DIR_ENV = "RT_SHM_DIR"
SHM_ROOT = "/dev/shm"
DIR_PREFIX = "resontech-weights-"
MAGIC = b"RTSHM1\n"
POOL_PREFIX = "free-"  # free-<bytes>/: files whose readers are done, for the next put of that size
RELEASED_PREFIX = "released-"
_counter = itertools.count()
_sent: dict[int, tuple[weakref.ref, str]] = {}  # id(array) -> (the array, the file its first message got)
_lock = threading.Lock()  # guards _sent and _owned
_owned: dict[int, tuple[str, int, weakref.ref]] = {}  # address -> (file, bytes, mapping) of this process's buffers
_freed: collections.deque[weakref.ref] = collections.deque()  # freed objects whose release waits (_when_freed)
_on_free: dict[int, tuple[weakref.ref, Callable[..., None], tuple]] = {}  # id(ref) -> (ref, release, its args)


def directory() -> str | None:
    """The job's shared-memory folder when weights travel through it in this process, else None."""
    path = os.environ.get(SHM_DIR_ENV)
    return path if path and os.path.isdir(path) else None


def put(array: np.ndarray, folder: str, reuse: bool = False) -> bytes:
    """Writes ``array``'s bytes to a file of its own in ``folder`` (a pooled one when there is one of its size);
    returns what the message carries instead.

    With ``reuse`` the array is one that cannot change while it lives (a marked, read-only ``rt_arrays.WireArray``,
    the same object in every site's copy of a broadcast task): a later message gets a hard link to the file of the
    first instead of a copy of its bytes, while that file is still there under its first name (its receiver has
    not finished with it: the sites of a broadcast ask for their task at about the same time); else the bytes are
    written again.
    """
    release_freed()
    name = _new_name()
    path = os.path.join(folder, name)
    header = MAGIC + json.dumps({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}).encode()
    owned = _owned_path(array)
    if owned is not None:  # the array is a buffer of this process's own (``buffer``): a name for its file
        os.link(owned, path)
        return header
    if reuse:
        with _lock:
            entry = _sent.get(id(array))
            if entry is not None and entry[0]() is array:
                try:
                    os.link(entry[1], path)
                    return header
                except OSError:  # released already (or the folder is gone): write it again
                    pass
    contiguous = array if array.flags.c_contiguous else np.array(array, order="C")
    view = memoryview(contiguous.reshape(-1).view(np.uint8))
    fd = _claim(folder, len(view), path)
    try:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written : written + (1 << 30)])
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    if reuse:
        with _lock:
            _sent[id(array)] = (weakref.ref(array), path)
        _when_freed(array, _forget, id(array), path)
    return header


def _new_name() -> str:
    """A file name no process of the job has used: this process's, numbered."""
    return f"{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def _pool(folder: str, size: int) -> str:
    return os.path.join(folder, f"{POOL_PREFIX}{size}")


def _claim(folder: str, size: int, path: str) -> int:
    """A file for ``size`` bytes at ``path``, open for writing: a pooled one of that size, else a new one."""
    if size:
        pool = _pool(folder, size)
        try:
            spare = os.listdir(pool)
        except FileNotFoundError:
            spare = []
        for name in spare:
            try:
                os.rename(os.path.join(pool, name), path)  # atomic: of two claimants, one gets it
            except FileNotFoundError:
                continue
            return os.open(path, os.O_RDWR)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def _release(path: str, size: int) -> None:
    """The receiver's last view of the file at ``path`` is gone: pool the file, or drop this name of it."""
    folder = os.path.dirname(path)
    private = os.path.join(folder, f"{RELEASED_PREFIX}{uuid.uuid4().hex}")
    try:
        os.rename(path, private)  # from here on no sender can link to it (they link by the first name)
        if os.stat(private).st_nlink == 1:  # no other name: no other process can still read it
            pool = _pool(folder, size)
            os.makedirs(pool, mode=0o700, exist_ok=True)
            os.rename(private, os.path.join(pool, uuid.uuid4().hex))
        else:
            os.unlink(private)
    except OSError:  # the folder is gone (the job ended)
        pass


def buffer(shape: tuple[int, ...], dtype: np.dtype, folder: str) -> np.ndarray:
    """A writable array over a file of its own in ``folder`` (its contents are garbage), for an array this process
    will send: ``put`` then gives each message a name for the file instead of a copy of its bytes.

    Whoever writes into the buffer again must first know that no receiver can still read it (``linked``); when the
    last reference to it in this process is gone its file is pooled as a received one is.
    """
    release_freed()
    dtype = np.dtype(dtype)
    size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return np.empty(shape, dtype)
    path = os.path.join(folder, _new_name())
    fd = _claim(folder, size, path)
    try:
        os.ftruncate(fd, size)
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    array = np.frombuffer(mapped, dtype=dtype).reshape(shape)
    address = array.ctypes.data
    with _lock:
        _owned[address] = (path, size, weakref.ref(mapped))
    _when_freed(mapped, _disown, address, path, size)
    return array


def shared_copy(array: np.ndarray, folder: str, least: int = 1 << 20) -> np.ndarray:
    """``array`` copied into a ``buffer`` when it holds at least ``least`` bytes of plain numbers, else itself."""
    if array.dtype.kind not in "biufc" or array.nbytes < least:
        return array
    copy = buffer(array.shape, array.dtype, folder)
    np.copyto(copy, array)
    return copy


def linked(array: np.ndarray) -> bool:
    """Whether a message names ``array``'s file (a ``buffer``): a receiver may still read it, or has yet to."""
    release_freed()
    entry = _owned.get(array.__array_interface__["data"][0])
    if entry is None or entry[2]() is None:
        return False
    try:
        return os.stat(entry[0]).st_nlink > 1
    except OSError:  # the folder is gone: nobody can take it any more, but do not write over it either
        return True


def _owned_path(array: np.ndarray) -> str | None:
    """The file of ``array`` when it is a whole ``buffer`` of this process (or a view of all of it), else None."""
    if not _owned or not array.flags.c_contiguous:
        return None
    entry = _owned.get(array.__array_interface__["data"][0])
    if entry is None or entry[1] != array.nbytes or entry[2]() is None:  # (a freed buffer: not yet released)
        return None
    return entry[0]


def _disown(address: int, path: str, size: int) -> None:
    with _lock:
        if _owned.get(address, (None,))[0] == path:
            del _owned[address]
    _release(path, size)


def _forget(key: int, path: str) -> None:
    with _lock:
        entry = _sent.get(key)
        if entry is not None and entry[1] == path:
            del _sent[key]


def is_reference(data: object) -> bool:
    return isinstance(data, (bytes, bytearray)) and bytes(data[: len(MAGIC)]) == MAGIC


def take(data: bytes, folder: str | None = None) -> np.ndarray:
    """The array a reference names: a read-only view of its file, mapped; the file is pooled (or dropped) when
    the last view of it is freed."""
    release_freed()
    header = json.loads(bytes(data[len(MAGIC) :]))
    folder = folder or directory()
    if not folder:
        raise ValueError(f"a shared-memory array arrived but {SHM_DIR_ENV} names no folder in this process")
    if "/" in header["name"] or header["name"].startswith((POOL_PREFIX, RELEASED_PREFIX)):
        raise ValueError(f"a shared-memory array names {header['name']!r}, not a message's file")
    path = os.path.join(folder, header["name"])
    dtype = np.dtype(header["dtype"])
    shape = tuple(int(n) for n in header["shape"])
    size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size != size:
            os.unlink(path)
            raise ValueError(f"shared-memory array {header['name']}: {os.fstat(fd).st_size} bytes, {size} announced")
        if size == 0:
            os.unlink(path)
            empty = np.empty(shape, dtype)
            empty.flags.writeable = False
            return empty
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    _when_freed(mapped, _release, path, size)
    return np.frombuffer(mapped, dtype=dtype).reshape(shape)


def _when_freed(obj: object, release: Callable[..., None], *args: object) -> None:
    """``release(*args)`` once ``obj`` is freed, at this process's next ``put``, ``take``, ``buffer`` or
    ``linked`` (``release_freed``).

    Freeing calls no Python code: the weak reference's callback is a deque's own (C) ``append``. An object is
    often freed in the middle of a garbage collection, inside whatever its thread was doing, and Python code run
    there may hand the interpreter to another thread; Python 3.11 then fails an ``ast`` parse that was under way
    on either (``SystemError: AST constructor recursion depth mismatch``, cpython gh-106905), and numpy parses
    every ``np.load`` header that way: it failed a server's decoding of a site's update.
    A child forked while this process held ``obj`` holds a copy of it, not a name: it releases nothing.
    """
    ref = weakref.ref(obj, _freed.append)
    _on_free[id(ref)] = (ref, release, args)


def release_freed() -> None:
    """Does what waits for objects freed since the last call (pools their files, forgets sent arrays)."""
    while _freed:
        try:
            ref = _freed.popleft()
        except IndexError:  # another thread took the last one
            return
        entry = _on_free.pop(id(ref), None)
        if entry is not None:
            entry[1](*entry[2])


def _forget_in_child() -> None:
    _freed.clear()
    _on_free.clear()
    _owned.clear()
    _sent.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_in_child)


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
