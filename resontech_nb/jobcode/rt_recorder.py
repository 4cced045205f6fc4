"""Server-side round recorder: one JSON line per finished round in ``<run dir>/rounds.jsonl``.

It knows which clients were asked, which answered (with loss, samples and every metric), which
failed (with their error) and which did not answer within ``train_timeout``, and how long the round
took. A later line for the same round replaces the earlier one: the validation of round r's global
model arrives with round r+1's results (the last one from the final ``validate`` task).

It also guards the round: when fewer than ``min_clients`` answered, the job is stopped with an
error naming the sites that did not, written to ``<run dir>/rt_status.json`` (with ``ended`` once
the run is over: when its last workflow has finished, ABOUT_TO_END_RUN, since NVFlare's server may then
wait seconds more before END_RUN, e.g. 2 s from its start for federated events that a job of ours never
sends). Shipped in the job's ``custom/`` folder; plain NVFlare.
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
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType
from rt_evaluation import Evaluation

ROUNDS_FILE = "rounds.jsonl"
STATUS_FILE = "rt_status.json"
ERROR_HEADER = "rt_error"
VALIDATION_KEYS = ("rt_validated_round", "rt_validation", "rt_validation_samples", "rt_validation_error")


def weighted_mean(parts: list[tuple[dict[str, float], int]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for metrics, samples in parts:
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * samples
            weights[key] = weights.get(key, 0) + samples
    return {key: sums[key] / weights[key] for key in sums if weights[key] > 0}


class RoundRecorder(FLComponent):
    def __init__(
        self,
        file_name: str = ROUNDS_FILE,
        train_task_name: str = "train",
        min_clients: int = 1,
        train_timeout: int = 0,
        select_metric: str = "",
        higher_is_better: bool = True,
        cross_site_eval: bool = False,
    ) -> None:
        super().__init__()
        self.file_name = file_name
        self.train_task_name = train_task_name
        self.min_clients = min_clients
        self.train_timeout = train_timeout
        self.select_metric = select_metric
        self.higher_is_better = higher_is_better
        self.cross_site_eval = cross_site_eval
        self._round: int | None = None
        self._num_rounds = 0
        self._started_at = 0.0
        self._asked: list[str] = []
        self._clients: dict[str, dict[str, Any]] = {}
        self._records: dict[int, dict[str, Any]] = {}
        self._validations: dict[int, dict[str, dict[str, Any]]] = {}
        self._evaluation: Evaluation | None = None
        self._error: str | None = None
        self._ended = False

    # -- events --------------------------------------------------------------------
    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            self._evaluation = Evaluation(self._run_dir(fl_ctx), self.select_metric, self.higher_is_better)
        elif event_type == AppEventType.ROUND_STARTED:
            self._start_round(fl_ctx)
        elif event_type == EventType.BEFORE_PROCESS_SUBMISSION:
            self._record_submission(fl_ctx)
        elif event_type == AppEventType.BEFORE_AGGREGATION:
            self._close_round(fl_ctx)
        elif event_type == AppEventType.ROUND_DONE:
            self._write_round(fl_ctx)
        elif event_type == AppEventType.VALIDATION_RESULT_RECEIVED:
            self._record_validation_task(fl_ctx)
        elif event_type == EventType.FATAL_SYSTEM_ERROR:
            self._record_fatal(fl_ctx)
        elif event_type in (EventType.ABOUT_TO_END_RUN, EventType.END_RUN):
            self._end_run(fl_ctx)

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
            self._clients[site] = {"status": "failed", "error": str(result.get_header(ERROR_HEADER) or rc)}
            self._note_validation(site, {k: result.get_header(k) for k in VALIDATION_KEYS})
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
        if meta.get("rt_steps"):  # the site's payload["log"] calls: [[name, value, step], ...]
            self._clients[site]["steps"] = list(meta["rt_steps"])
        self._note_validation(site, meta)

    def _note_validation(self, site: str, values: Any) -> None:
        validated = values.get("rt_validated_round")
        if validated is None:
            return
        entry: dict[str, Any] = {}
        if values.get("rt_validation_error"):
            entry["validation_error"] = str(values["rt_validation_error"])
        elif values.get("rt_validation"):
            entry["validation"] = {k: float(v) for k, v in values["rt_validation"].items()}
            entry["validation_samples"] = int(values.get("rt_validation_samples") or 0)
        if entry:
            self._validations.setdefault(int(validated), {})[site] = entry

    def _close_round(self, fl_ctx: FLContext) -> None:
        """All answers of this round are in: mark who did not answer, stop the job if too few did."""
        if self._round is None:
            return
        timed_out = self.train_timeout and time.time() - self._started_at >= 0.98 * self.train_timeout
        for site in self._asked:
            if site not in self._clients and timed_out:
                self._clients[site] = {
                    "status": "failed",
                    "error": f"no answer within train_timeout={self.train_timeout} s",
                }
        previous = self._round - 1
        if previous in self._records:
            self._apply_validation(previous, fl_ctx)
        answered = [s for s, c in self._clients.items() if c["status"] == "ok"]
        if len(answered) < self.min_clients:
            reason = self._too_few_message(answered)
            self._write_round(fl_ctx)
            self._stop(reason, fl_ctx)

    def _too_few_message(self, answered: list[str]) -> str:
        problems = []
        for site in self._asked:
            client = self._clients.get(site)
            if client is None:
                problems.append(f"{site}: no answer")
            elif client["status"] != "ok":
                problems.append(f"{site}: {client.get('error')}")
        return (
            f"round {self._round + 1}: only {len(answered)} of min_clients={self.min_clients} site(s) answered "
            f"({'; '.join(problems)})"
        )

    def _apply_validation(self, round_number: int, fl_ctx: FLContext) -> None:
        entries = self._validations.pop(round_number, {})
        if not entries:
            return
        record = self._records[round_number]
        for site, entry in entries.items():
            record["clients"].setdefault(site, {"status": "absent"}).update(entry)
        parts = [(c["validation"], c["validation_samples"]) for c in record["clients"].values() if c.get("validation")]
        record["validation"] = weighted_mean(parts)
        self._append(record, fl_ctx)
        if self._evaluation is not None:
            self._evaluation.consider(round_number, record["validation"], fl_ctx)

    def _record_validation_task(self, fl_ctx: FLContext) -> None:
        """A ``validate`` result: the final global model's validation, or a cell of the cross-site matrix."""
        owner = str(fl_ctx.get_prop(AppConstants.MODEL_OWNER) or "")
        site = str(fl_ctx.get_prop(AppConstants.DATA_CLIENT) or "")
        result: Shareable | None = fl_ctx.get_prop(AppConstants.VALIDATION_RESULT)
        if result is None or not site:
            return
        rc = result.get_return_code()
        entry: dict[str, Any] = {}
        if rc and rc != ReturnCode.OK:
            entry["validation_error"] = str(result.get_header(ERROR_HEADER) or rc)
        else:
            try:
                dxo = from_shareable(result)
            except Exception as exc:
                entry["validation_error"] = f"unreadable validation result: {exc}"
            else:
                if dxo.data:
                    entry["validation"] = {k: float(v) for k, v in dxo.data.items()}
                    entry["validation_samples"] = int(dxo.meta.get("rt_samples") or 0)
        if self.cross_site_eval and self._evaluation is not None and "validation" in entry:
            self._evaluation.add_cross_site(owner, site, entry["validation"])
        last = max(self._records) if self._records else None
        if owner.startswith("SRV_") and last is not None and entry:
            self._validations.setdefault(last, {})[site] = entry
            self._apply_validation_without_selection(last, fl_ctx)

    def _apply_validation_without_selection(self, round_number: int, fl_ctx: FLContext) -> None:
        """The final model's results arrive one site at a time: record each, select once at the end."""
        evaluation, self._evaluation = self._evaluation, None
        try:
            self._apply_validation(round_number, fl_ctx)
        finally:
            self._evaluation = evaluation

    def _record_fatal(self, fl_ctx: FLContext) -> None:
        if self._error is not None:
            return
        reason = str(fl_ctx.get_prop(FLContextKey.EVENT_DATA) or "the server stopped the job")
        failed = [f"{s} failed round {self._round + 1}: {c['error']}" for s, c in sorted(self._clients.items())
                  if c["status"] == "failed"] if self._round is not None else []
        if self._round is not None:
            self._write_round(fl_ctx)
        self._write_status(fl_ctx, error=failed[0] if failed else reason)

    def _end_run(self, fl_ctx: FLContext) -> None:
        if self._ended:
            return
        self._ended = True
        if self._evaluation is not None:
            last = max(self._records) if self._records else None
            if last is not None and self._records[last].get("validation"):
                self._evaluation.consider(last, self._records[last]["validation"], fl_ctx)
            self._evaluation.finish()
        self._write_status(fl_ctx, error=self._error, ended=True)

    # -- writing -------------------------------------------------------------------
    def _stop(self, reason: str, fl_ctx: FLContext) -> None:
        self._write_status(fl_ctx, error=reason)
        self.log_error(fl_ctx, reason)
        self.system_panic(reason, fl_ctx)

    def _write_round(self, fl_ctx: FLContext) -> None:
        if self._round is None:
            return
        clients = {name: {"status": "absent"} for name in self._asked}
        clients.update(self._clients)
        answered = [c for c in clients.values() if c["status"] == "ok"]
        with_loss = [c for c in answered if c.get("loss") is not None]
        total = sum(c["samples"] for c in with_loss)
        global_loss = sum(c["loss"] * c["samples"] for c in with_loss) / total if total else None
        record = {
            "round": self._round,
            "num_rounds": self._num_rounds,
            "global_loss": global_loss,
            "metrics": weighted_mean([(c.get("metrics") or {}, c["samples"]) for c in answered]),
            "started_at": self._started_at,
            "finished_at": time.time(),
            "clients": dict(sorted(clients.items())),
        }
        self._records[self._round] = record
        self._append(record, fl_ctx)
        self.log_info(fl_ctx, f"round {self._round} recorded: global loss {global_loss}")
        self._round = None

    def _append(self, record: dict[str, Any], fl_ctx: FLContext) -> None:
        path = os.path.join(self._run_dir(fl_ctx), self.file_name)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _write_status(self, fl_ctx: FLContext, error: str | None, ended: bool = False) -> None:
        self._error = error
        path = os.path.join(self._run_dir(fl_ctx), STATUS_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump({"error": error, "ended": ended, "at": time.time()}, fh)
        os.replace(path + ".tmp", path)

    @staticmethod
    def _run_dir(fl_ctx: FLContext) -> str:
        workspace = fl_ctx.get_engine().get_workspace()
        return workspace.get_run_dir(fl_ctx.get_job_id())
