"""Weights on the wire as their raw bytes: NVFlare's download of numpy arrays without the zip and its checksums.

NVFlare sends each numpy array of a message as one ``np.savez`` zip (a CRC pass and two copies), and the
receiver reads it back with ``np.load`` (a CRC pass and a copy): for a 180 MB model that is about 0.3 s of
CPU per hop, on top of the transport, and a fresh 180 MB in each process. Arrays marked here
(``WireArray``, a view: no copy) travel through NVFlare's same download service, in the same pieces
(``np_download_chunk_size``), but each array is its bytes as they lie in memory, described by one header
item that leads the download. The receiver gets plain, read-only numpy arrays over the received bytes (no
copy); ``rt_tensors.as_tensor`` makes tensors of them without a copy either. The first ``INLINE_BYTES`` of a
message's arrays ride inside the message instead (NVFlare's own ``np.save`` encoding, exact as well): a
download costs a few request/reply trips, which were most of a small model's round.

A marked array is a read-only view of its base, and deep-copying one returns itself: NVFlare deep-copies
a broadcast task's data to protect it from in-place changes while it is sent, and here the view cannot be
changed, while the server's global model is only ever replaced by a new one between rounds.

Every job process registers the decomposer with FOBS before any message: the job's configs list
``RawWeightsFormat`` among the components of the server and of every site, so a site with its own executor
reads the raw weights too (importing the module registers it as well). A process that has not registered
it refuses the message with "Decomposer ... must be registered" rather than misreading it. Arrays that
are not plain numbers (object arrays) are left unmarked and take NVFlare's own way. The same component
starts ``rt_pieces`` at the start of the run, so that each piece served or received frees what NVFlare's
transport kept of the earlier ones.
On the local target (``rt_shm.SHM_DIR_ENV`` set) the arrays past the inline ones go through shared memory
instead of the download: inside the message travels only the name of a file under ``/dev/shm`` (``rt_shm``).
Shipped in the job's ``custom/`` folder.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.decomposers.numpy_decomposers import NumpyArrayDecomposer
from nvflare.fuel.f3.cellnet.cell import Cell
from nvflare.fuel.f3.streaming.cacheable import CacheableObject, ItemConsumer
from nvflare.fuel.f3.streaming.download_service import Downloadable, download_object
from nvflare.fuel.utils import fobs
from nvflare.fuel.utils.fobs.datum import DatumManager
from nvflare.fuel.utils.fobs.decomposers.via_downloader import EncKey, EncType

if __package__:  # imported from the package on the notebook side (tests)
    from . import rt_pieces, rt_shm
else:
    import rt_pieces
    import rt_shm

RAW_DOWNLOAD_DOT = 101  # NVFlare's own DOTs are 1-6 (nvflare.fuel.utils.fobs.dots)
RAW_KINDS = frozenset("biufc")  # bool, signed and unsigned integers, floats, complex
INLINE_BYTES = 1 << 20  # arrays of a message ride inside it (NVFlare's np.save) while they total at most this
_INLINE_KEY = "rt_inline_bytes"
_PARSING = threading.Lock()


class WireArray(np.ndarray):
    """A numpy array that travels as its raw bytes; made by ``mark``, a read-only view of the original."""

    def __deepcopy__(self, memo: dict) -> WireArray:
        return self


def mark(weights: Mapping[str, Any]) -> dict[str, Any]:
    """The same arrays (views, no copy) marked to travel raw; other values as they are."""
    out = {}
    for key, value in weights.items():
        if type(value) is np.ndarray and value.dtype.kind in RAW_KINDS:
            value = value.view(WireArray)
            value.flags.writeable = False
        out[key] = value
    return out


class RawArrays(CacheableObject):
    """A message's marked arrays for NVFlare's download service: a header item, then each array's bytes."""

    def __init__(self, arrays: dict[str, np.ndarray], max_chunk_size: int) -> None:
        self.keys = list(arrays)
        self.header = json.dumps([[k, arrays[k].dtype.str, list(arrays[k].shape)] for k in self.keys]).encode()
        super().__init__(arrays, max_chunk_size)

    def get_item_count(self) -> int:
        return len(self.keys) + 1

    def produce(self, state: dict, requester: str) -> tuple[str, Any, dict]:
        rt_pieces.piece_done()  # the previous piece has reached the receiver, who asks for the next
        return super().produce(state, requester)

    def get_item_size(self, index: int) -> int | None:
        if index == 0:
            return len(self.header)
        base = self.base_obj
        return None if base is None else base[self.keys[index - 1]].nbytes

    def produce_item(self, index: int) -> bytes | memoryview:
        if index == 0:
            return self.header
        array = np.asarray(self.base_obj[self.keys[index - 1]], order="C")
        return memoryview(array.reshape(-1).view(np.uint8))


class RawArrayConsumer(ItemConsumer):
    """Rebuilds the arrays, in the order they come, as read-only views of the received bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._expected: list[tuple[str, np.dtype, tuple[int, ...]]] | None = None
        self._next = 0

    def consume_items(self, items: list[Any], result: Any) -> Any:
        rt_pieces.piece_done()
        result = {} if result is None else result
        for item in items:
            if self._expected is None:
                self._expected = [(key, np.dtype(dtype), tuple(shape)) for key, dtype, shape in json.loads(item)]
                continue
            if self._next >= len(self._expected):
                raise ValueError("more arrays than the header announced")
            key, dtype, shape = self._expected[self._next]
            size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            if len(item) != size:
                raise ValueError(f"array {key}: {len(item)} bytes received, {size} announced")
            result[key] = np.frombuffer(item, dtype=dtype).reshape(shape)
            self._next += 1
        return result

    def download_completed(self, ref_id: str) -> None:
        if self._expected is None or self._next != len(self._expected):
            self.error = f"download ended after {self._next} arrays"
            self.result = None
        super().download_completed(ref_id)


class WireArrayDecomposer(NumpyArrayDecomposer):
    """NVFlare's numpy decomposer (same settings, ``np_`` prefix) for marked arrays, with the raw items."""

    _told = False  # whether this process has logged that arrays go through shared memory

    def supported_type(self) -> type:
        return WireArray

    def get_download_dot(self) -> int:
        return RAW_DOWNLOAD_DOT

    def to_downloadable(self, items: dict, max_chunk_size: int, fobs_ctx: dict) -> Downloadable:
        return RawArrays(items, max_chunk_size)

    def download(
        self,
        from_fqcn: str,
        ref_id: str,
        per_request_timeout: float,
        cell: Cell,
        secure: bool = False,
        optional: bool = False,
        abort_signal: Any = None,
        progress_cb: Any = None,
        fobs_ctx: dict | None = None,
    ) -> tuple[str | None, dict | None]:
        consumer = RawArrayConsumer()
        download_object(
            from_fqcn=from_fqcn,
            ref_id=ref_id,
            consumer=consumer,
            per_request_timeout=per_request_timeout,
            cell=cell,
            secure=secure,
            optional=optional,
            abort_signal=abort_signal,
            progress_cb=progress_cb,
        )
        return consumer.error, consumer.result

    def decompose(self, target: Any, manager: DatumManager = None) -> Any:
        """Small arrays inside the message, NVFlare's native way; the rest as a download (``RawArrays``).

        A download costs a few request/reply trips between the processes, 20-30 ms on a busy 2-core machine:
        most of a small model's round. Inside the message the bytes make no trip of their own, so the first
        ``INLINE_BYTES`` of arrays of each message go there; past them a message's arrays take the download.
        """
        fobs_ctx = manager.fobs_ctx if manager is not None else None
        if isinstance(target, np.ndarray) and fobs_ctx is not None:
            inline = fobs_ctx.get(_INLINE_KEY, 0) + target.nbytes
            if inline <= INLINE_BYTES:
                fobs_ctx[_INLINE_KEY] = inline
                return {EncKey.TYPE: EncType.NATIVE, EncKey.DATA: self.native_decompose(target, manager)}
            shared = rt_shm.directory()
            if shared and fobs_ctx.get(fobs.FOBSContextKey.CELL):  # a message between this machine's processes
                if not self._told:
                    self._told = True
                    self.logger.info(f"arrays through shared memory in {shared}")
                return {EncKey.TYPE: EncType.NATIVE, EncKey.DATA: rt_shm.put(target, shared, reuse=True)}
        return super().decompose(target, manager)

    def native_decompose(self, target: np.ndarray, manager: DatumManager = None) -> bytes:
        return super().native_decompose(np.asarray(target), manager)  # in the message itself: NVFlare's np.save

    def native_recompose(self, data: bytes, manager: DatumManager = None) -> np.ndarray:
        if rt_shm.is_reference(data):
            return rt_shm.take(data)
        with _PARSING:  # np.load parses its header with ``ast``: one thread at a time (see rt_shm._when_freed)
            return super().native_recompose(data, manager)


def register() -> None:
    """Registers the raw format with FOBS in this process (again: nothing)."""
    fobs.register(WireArrayDecomposer)


class RawWeightsFormat(FLComponent):
    """A job component: registers the raw format when the job's app is loaded, starts ``rt_pieces`` with the run."""

    def __init__(self) -> None:
        super().__init__()
        register()

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            rt_pieces.freeze_startup_objects()


register()
