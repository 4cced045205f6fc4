"""Server-side round recorder: one JSON line per finished round in ``<run dir>/rounds.jsonl``.

It knows which clients were asked, which answered (with loss and sample count) and which
failed, and how long the round took. Shipped in the job's ``custom/`` folder; plain NVFlare.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

ROUNDS_FILE = "rounds.jsonl"
ERROR_HEADER = "rt_error"


class RoundRecorder(FLComponent):
    def __init__(self, file_name: str = ROUNDS_FILE, train_task_name: str = "train") -> None:
        super().__init__()
        self.file_name = file_name
        self.train_task_name = train_task_name
        self._round: int | None = None
        self._num_rounds = 0
        self._started_at = 0.0
        self._asked: list[str] = []
        self._clients: dict[str, dict[str, Any]] = {}

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == AppEventType.ROUND_STARTED:
            self._start_round(fl_ctx)
        elif event_type == EventType.BEFORE_PROCESS_SUBMISSION:
            self._record_submission(fl_ctx)
        elif event_type == AppEventType.ROUND_DONE:
            self._write_round(fl_ctx)

    def _start_round(self, fl_ctx: FLContext) -> None:
        self._round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        self._num_rounds = int(fl_ctx.get_prop(AppConstants.NUM_ROUNDS) or 0)
        self._started_at = time.time()
        self._asked = sorted(c.name for c in fl_ctx.get_engine().get_clients())
        self._clients = {}

    def _record_submission(self, fl_ctx: FLContext) -> None:
        if self._round is None:
            return
        if fl_ctx.get_prop(FLContextKey.TASK_NAME) not in (None, self.train_task_name):
            return
        result = fl_ctx.get_prop(FLContextKey.TASK_RESULT)
        peer = fl_ctx.get_peer_context()
        if result is None or peer is None:
            return
        site = peer.get_identity_name()
        contribution_round = result.get_cookie(AppConstants.CONTRIBUTION_ROUND)
        if contribution_round is not None and contribution_round != self._round:
            return  # a late result from an earlier round
        rc = result.get_return_code()
        if rc and rc != ReturnCode.OK:
            error = result.get_header(ERROR_HEADER) or str(rc)
            self._clients[site] = {"status": "failed", "error": str(error)}
            return
        try:
            meta = from_shareable(result).meta
        except Exception as exc:  # not a DXO: the aggregator will reject it too
            self._clients[site] = {"status": "failed", "error": f"unreadable result: {exc}"}
            return
        loss = meta.get("rt_loss")
        self._clients[site] = {
            "status": "ok",
            "loss": None if loss is None else float(loss),
            "samples": int(meta.get("rt_samples") or meta.get("NUM_STEPS_CURRENT_ROUND") or 0),
            "metrics": meta.get("rt_metrics") or {},
        }

    def _write_round(self, fl_ctx: FLContext) -> None:
        if self._round is None:
            return
        clients = {name: {"status": "absent"} for name in self._asked}
        clients.update(self._clients)
        answered = [c for c in clients.values() if c["status"] == "ok" and c.get("loss") is not None]
        total = sum(c["samples"] for c in answered)
        global_loss = sum(c["loss"] * c["samples"] for c in answered) / total if total else None
        record = {
            "round": self._round,
            "num_rounds": self._num_rounds,
            "global_loss": global_loss,
            "started_at": self._started_at,
            "finished_at": time.time(),
            "clients": dict(sorted(clients.items())),
        }
        workspace = fl_ctx.get_engine().get_workspace()
        path = os.path.join(workspace.get_run_dir(fl_ctx.get_job_id()), self.file_name)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.log_info(fl_ctx, f"round {self._round} recorded: global loss {global_loss}")
        self._round = None
