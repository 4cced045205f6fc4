"""The data summary as a statistics task on the sites: each site returns counts only, never rows.

Site side, ``SiteStatistics`` (an Executor for the task ``rt_stats``): reads its shard's manifest the way the
default loop does (``rt_manifest``), and answers with

    {"train": n, "val": n, "test": n, "multi_label": bool,
     "labels": {"<class>": n}, "image_sizes": {"<w>x<h>": n}, "image_modes": {"<mode>": n}}

every count below ``min_count`` (but not zero) withheld as ``None`` on the site, before it is sent: no id, URI,
label of a row or pixel ever leaves the site. Image sizes and modes come from the first ``sample`` entries.

Server side, ``StatisticsGather`` (a Controller): broadcasts one ``rt_stats`` task, keeps from each answer only
the fields above with integer (or withheld) counts, and writes ``{"best_round": null, "cross_site": {},
"data_summary": {site: counts}}`` to ``<run dir>/evaluation.json`` (where every target already reads what the
server knows beyond the rounds) and ``rt_status.json`` with ``ended``.

This is the job's own small workflow rather than NVFlare's ``StatisticsController``: that one computes numeric
features' statistics over a dataframe (its ``min_count`` drops a whole feature), while this summary is label
bins, row counts per split and image headers, each bin withheld by itself.
Shipped in the job's ``custom/`` folder; plain NVFlare + numpy/Pillow, no resontech_nb import.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import time
from typing import Any

from nvflare.apis.client import Client
from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.impl.controller import Controller
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal

try:
    from .rt_manifest import read_manifest, split_samples
    from .rt_zip import ShardView
except ImportError:  # in a job's custom/ folder
    from rt_manifest import read_manifest, split_samples
    from rt_zip import ShardView

TASK = "rt_stats"
EVALUATION_FILE = "evaluation.json"
STATUS_FILE = "rt_status.json"
COUNT_FIELDS = ("train", "val", "test")
BIN_FIELDS = ("labels", "image_sizes", "image_modes")


def withhold(count: int, min_count: int) -> int | None:
    """``count``, or None when it is below ``min_count`` but not zero (a small bin could single out rows)."""
    return None if 0 < count < min_count else count


def site_counts(
    shard: str, manifest_file: str, num_classes: int, val_fraction: float, sample: int, min_count: int
) -> dict[str, Any]:
    """What one site tells the server about its shard: counts, each below ``min_count`` withheld."""
    samples = read_manifest(shard, manifest_file, num_classes)
    train, val = split_samples(samples, val_fraction)
    counts = {"train": len(train), "val": len(val), "test": len(samples) - len(train) - len(val)}
    labels: dict[str, int] = {}
    for row in samples:
        for label in row.y:
            labels[str(label)] = labels.get(str(label), 0) + 1
    sizes: dict[str, int] = {}
    modes: dict[str, int] = {}
    from PIL import Image

    with ShardView(shard) as view:
        for row in samples[: max(sample, 0)]:
            if row.is_remote:
                continue
            try:
                with Image.open(io.BytesIO(view.read(posixpath.normpath(row.relative_path)))) as image:
                    key = f"{image.size[0]}x{image.size[1]}"
                    sizes[key] = sizes.get(key, 0) + 1
                    modes[image.mode] = modes.get(image.mode, 0) + 1
            except Exception:  # noqa: BLE001 - an unreadable image is the training task's error to report
                continue
    result: dict[str, Any] = {name: withhold(value, min_count) for name, value in counts.items()}
    result["multi_label"] = any(len(row.y) > 1 for row in samples)
    for name, bins in (("labels", labels), ("image_sizes", sizes), ("image_modes", modes)):
        result[name] = {key: withhold(value, min_count) for key, value in sorted(bins.items())}
    return result


def clean_counts(data: Any) -> dict[str, Any] | None:
    """Only the summary's fields, each an int >= 0 or None (withheld); None for anything else."""
    if not isinstance(data, dict):
        return None

    def count(value: Any) -> bool:
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)

    out: dict[str, Any] = {}
    for name in COUNT_FIELDS:
        if not count(data.get(name)):
            return None
        out[name] = data.get(name)
    out["multi_label"] = bool(data.get("multi_label"))
    for name in BIN_FIELDS:
        bins = data.get(name)
        if not isinstance(bins, dict) or not all(isinstance(k, str) and len(k) <= 32 and count(v)
                                                  for k, v in bins.items()):
            return None
        out[name] = dict(bins)
    return out


class SiteStatistics(Executor):
    """The site's side: counts of its shard for the task ``rt_stats``."""

    def __init__(
        self,
        shards: dict[str, str] | None = None,
        data_dir: str = "",
        manifest_file: str = "manifest.ndjson",
        num_classes: int = 0,
        val_fraction: float = 0.2,
        sample: int = 64,
        min_count: int = 0,
    ) -> None:
        super().__init__()
        self.shards = dict(shards or {})
        self.data_dir = data_dir
        self.manifest_file = manifest_file
        self.num_classes = num_classes
        self.val_fraction = val_fraction
        self.sample = sample
        self.min_count = min_count

    def _shard(self, site: str) -> str:
        path = os.environ.get("RESONTECH_SHARD") or self.shards.get(site)
        if not path and self.data_dir:
            path = os.path.join(self.data_dir, f"{site}.zip")
        if not path or not os.path.exists(path):
            raise FileNotFoundError(
                f"no shard for site {site!r} ({path or 'none configured'}): set RESONTECH_SHARD on the site"
            )
        return path

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name != TASK:
            return make_reply(ReturnCode.TASK_UNKNOWN)
        site = fl_ctx.get_identity_name()
        try:
            counts = site_counts(
                self._shard(site), self.manifest_file, self.num_classes, self.val_fraction, self.sample,
                self.min_count,
            )
        except Exception as exc:  # noqa: BLE001 - the server reports the site's error by name
            self.log_error(fl_ctx, f"{site}: data summary failed: {exc}")
            reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
            reply.set_header("rt_error", str(exc)[:500])
            return reply
        self.log_info(fl_ctx, f"{site}: data summary sent (counts only, min_count={self.min_count})")
        return DXO(data_kind=DataKind.STATISTICS, data={"counts": counts}).to_shareable()


class StatisticsGather(Controller):
    """The server's side: one ``rt_stats`` task to every site; their counts into ``evaluation.json``."""

    def __init__(self, timeout: int = 600, task_check_period: float = 0.2) -> None:
        super().__init__(task_check_period=task_check_period)
        self.timeout = timeout
        self._counts: dict[str, Any] = {}
        self._errors: dict[str, str] = {}

    def start_controller(self, fl_ctx: FLContext) -> None:
        self._counts, self._errors = {}, {}

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        clients = self._engine.get_clients()
        task = Task(name=TASK, data=Shareable(), timeout=self.timeout, result_received_cb=self._received)
        self.broadcast_and_wait(
            task=task, targets=None, min_responses=len(clients), wait_time_after_min_received=0, fl_ctx=fl_ctx,
            abort_signal=abort_signal,
        )
        for client in clients:
            if client.name not in self._counts and client.name not in self._errors:
                self._errors[client.name] = f"no answer within {self.timeout} s"
        self._write(fl_ctx)

    def _received(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        site = client_task.client.name
        result = client_task.result
        rc = result.get_return_code() if result is not None else None
        if rc not in (None, ReturnCode.OK):
            self._errors[site] = str(result.get_header("rt_error") or rc)
        else:
            try:
                counts = clean_counts(from_shareable(result).data.get("counts"))
            except Exception:  # noqa: BLE001 - not a DXO: treated like counts of the wrong shape
                counts = None
            if counts is None:
                self._errors[site] = "the site's answer was not a data summary's counts"
            else:
                self._counts[site] = counts
        client_task.result = None  # nothing of the answer is kept beyond the counts

    def _write(self, fl_ctx: FLContext) -> None:
        workspace = fl_ctx.get_prop(FLContextKey.WORKSPACE_OBJECT) or self._engine.get_workspace()
        run_dir = workspace.get_run_dir(fl_ctx.get_job_id())
        evaluation = {"best_round": None, "cross_site": {}, "data_summary": dict(sorted(self._counts.items()))}
        if self._errors:
            evaluation["data_summary_errors"] = dict(sorted(self._errors.items()))
        status = {"error": None, "ended": True, "at": time.time()}
        for name, data in ((EVALUATION_FILE, evaluation), (STATUS_FILE, status)):
            path = os.path.join(run_dir, name)
            with open(path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(path + ".tmp", path)

    def process_result_of_unknown_task(
        self, client: Client, task_name: str, client_task_id: str, result: Shareable, fl_ctx: FLContext
    ) -> None:
        self.log_warning(fl_ctx, f"ignored a result for the unknown task {task_name!r} from {client.name}")

    def stop_controller(self, fl_ctx: FLContext) -> None:
        return None
