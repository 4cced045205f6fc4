"""A job on an NVFlare deployment (``nvflare`` target): its state, round records, evaluation and weights.

Round records: while the job runs they are read from the server's run folder with the admin API's
``cat`` command. That command only reads a few file types (``.txt``, ``.json``, ...), so the copy of
the job submitted here has its recorder write ``rounds.jsonl.txt``. After the job ends, the records and
the final model come from the job result, downloaded once to ``<jobs home>/nvflare/<job id>/result``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import DeploymentUnreachableError, JobNotFoundError, NVFlareError, ResonTechError
from ...job.handle import Job, JobState, statistics_end
from ...jobcode import rt_files
from ...records.rounds import RoundRecord, parse_lines
from ...records.status import ABORTED, FAILED, FINAL_STATES, FINISHED, RUNNING, SUBMITTED
from .admin import AdminLink

log = logging.getLogger(__name__)


ROUNDS_FILE = "rounds.jsonl"
REMOTE_ROUNDS_FILE = "rounds.jsonl.txt"  # a name the admin API's `cat` accepts
MODEL_FILE = f"{rt_files.MODEL_DIR}/{rt_files.GLOBAL_MODEL_FILE}"
MODEL_FILES = {"final": MODEL_FILE, "best": f"{rt_files.MODEL_DIR}/{rt_files.BEST_MODEL_FILE}"}
STATUS_FILE = "rt_status.json"  # the server's word on how the run ended (jobcode/rt_recorder.py)
EVALUATION_FILE = "evaluation.json"  # best round and cross-site results (jobcode/rt_evaluation.py)
HANG_GRACE_S = 20.0  # after the run ended, how long NVFlare may keep reporting RUNNING
LOST_CONTACT_S = 60.0  # how long the server may stay unreachable before a running job counts as FAILED

# NVFlare's job status (nvflare.apis.job_def.RunStatus) -> ours. Anything else that starts
# with FINISHED is a failure.
_STATUS = {
    "SUBMITTED": SUBMITTED,
    "APPROVED": SUBMITTED,
    "DISPATCHED": RUNNING,
    "RUNNING": RUNNING,
    "FINISHED:COMPLETED": FINISHED,
    "FINISHED_OK": FINISHED,
    "FINISHED:ABORTED": ABORTED,
    "ABORTED": ABORTED,
}


def map_status(nvflare_status: str | None) -> JobState:
    """Our ``JobState`` for an NVFlare job status such as ``FINISHED:EXECUTION_EXCEPTION``."""
    status = (nvflare_status or "").strip()
    if status in _STATUS:
        return JobState(_STATUS[status])
    if status.startswith("FINISHED") or status in ("FAILED", "ABANDONED", "FINISHED_EXCEPTION"):
        return JobState(FAILED, f"NVFlare ended the job with status {status}")
    return JobState(RUNNING if status else SUBMITTED)


class NVFlareJob(Job):
    """A job on an NVFlare deployment; its id is NVFlare's job id."""

    lost_contact_s = LOST_CONTACT_S  # per job, so a test or an impatient user can shorten it

    target = "nvflare"
    abort_timeout: float = 60.0

    def __init__(self, job_id: str, link: AdminLink, state_dir: Path, state: dict[str, Any]) -> None:
        super().__init__(job_id, num_rounds=int(state.get("num_rounds") or 0), clients=state.get("sites"))
        self.name = state.get("name") or job_id
        self.submitted_at = state.get("submitted_at", self.submitted_at)
        self._link = link
        self.state_dir = Path(state_dir)
        self.nvflare_status: str | None = None
        self._run_ended_seen: float | None = None
        self._unreachable_since: float | None = None

    @property
    def result_dir(self) -> Path:
        """The downloaded job result: ``workspace/`` is the server's run folder, ``job/`` the job."""
        return self.state_dir / "result"

    # -- the four target methods ---------------------------------------------------
    def _poll(self) -> JobState:
        try:
            meta = self._link.call(lambda s: s.get_job_meta(self.id))
        except DeploymentUnreachableError as exc:
            # The server process died (or the network did): after LOST_CONTACT_S the job is given up on.
            self._unreachable_since = self._unreachable_since or time.monotonic()
            if time.monotonic() - self._unreachable_since < self.lost_contact_s:
                return self._state
            return JobState(
                FAILED, f"lost contact with the NVFlare server for {self.lost_contact_s:.0f} s while the job ran: {exc}"
            )
        self._unreachable_since = None
        self.nvflare_status = meta.get("status")
        state = map_status(self.nvflare_status)
        if state.status == RUNNING and self._lingers():
            # Our server side ended the run, yet NVFlare still reports RUNNING: it waits for a site that is
            # gone. Stop the job so the deployment is free again; the run's own records decide the outcome.
            log.warning("job %s: the run ended %s s ago but NVFlare still reports RUNNING; stopping it",
                        self.id, HANG_GRACE_S)
            with contextlib.suppress(ResonTechError):
                self._abort()
            state = JobState(FAILED, f"NVFlare still reported the job RUNNING {HANG_GRACE_S:.0f} s after its run ended")
        if state.status in FINAL_STATES:
            state = self._final_state(state)
        return state

    def _lingers(self) -> bool:
        """Whether the server's run reported its end more than ``HANG_GRACE_S`` ago (seen from here)."""
        if self._run_ended_seen is None:
            try:
                text = self._link.call(lambda s: s.cat_target("server", file=f"{self.id}/{STATUS_FILE}"))
            except ResonTechError:
                return False
            if text.startswith("cat:") or not _read_json_text(text).get("ended"):
                return False
            self._run_ended_seen = time.monotonic()
        return time.monotonic() - self._run_ended_seen > HANG_GRACE_S

    def _fetch_rounds(self) -> list[RoundRecord]:
        if (self.result_dir / "workspace").is_dir():
            records = self._rounds_from_result()
        elif self._state.status == RUNNING:
            records = self._live_rounds()
        else:
            records = self._rounds
        self._learn_from(records)
        return records

    def _fetch_result(self, which: str = "final") -> dict[str, Any]:
        import torch

        self._download()
        path = self.result_dir / "workspace" / MODEL_FILES[which]
        if not path.is_file():
            raise JobNotFoundError(f"job {self.id} finished but its result holds no {which} model ({path})")
        return torch.load(path, map_location="cpu", weights_only=True)

    def _abort(self) -> None:
        from nvflare.fuel.flare_api.api_spec import JobNotRunning

        try:
            self._link.call(lambda s: s.abort_job(self.id))
        except (JobNotRunning, NVFlareError):
            # It may have ended by itself in the meantime; anything else is worth reporting.
            status = self._link.call(lambda s: s.get_job_meta(self.id)).get("status")
            if map_status(status).status not in FINAL_STATES:
                raise
        deadline = time.monotonic() + self.abort_timeout
        status = self.nvflare_status
        while time.monotonic() < deadline:
            status = self._link.call(lambda s: s.get_job_meta(self.id)).get("status")
            if map_status(status).status in FINAL_STATES:
                self.nvflare_status = status
                break
            time.sleep(0.5)
        else:
            log.warning("job %s: NVFlare still reports %s after the abort request", self.id, status)
            return
        with contextlib.suppress(ResonTechError):
            self._download()
            self._rounds = self._rounds_from_result()

    def _fetch_evaluation(self) -> dict[str, Any]:
        path = self.result_dir / "workspace" / EVALUATION_FILE
        if path.is_file():
            return _read_json_text(path.read_text(encoding="utf-8"))
        if self._state.status != RUNNING:
            return {}
        try:
            text = self._link.call(lambda s: s.cat_target("server", file=f"{self.id}/{EVALUATION_FILE}"))
        except ResonTechError:
            return {}
        return {} if text.startswith("cat:") else _read_json_text(text)

    # -- helpers -----------------------------------------------------------------
    def _final_state(self, state: JobState) -> JobState:
        try:
            self._download()
        except ResonTechError as exc:
            log.warning("job %s ended but its result could not be downloaded: %s", self.id, exc)
            return state
        workspace = self.result_dir / "workspace"
        server = _read_json_text((workspace / STATUS_FILE).read_text(encoding="utf-8")) if (
            workspace / STATUS_FILE).is_file() else {}
        if server.get("error"):
            return JobState(FAILED, str(server["error"]))
        statistics = statistics_end(self._fetch_evaluation()) if server.get("ended") else None
        if statistics is not None:  # a statistics job: no rounds, no model, its counts are its result
            return statistics
        records = self._rounds_from_result()
        complete = bool(self.num_rounds) and len(records) >= self.num_rounds and (workspace / MODEL_FILE).is_file()
        if state.status == FAILED and complete and server.get("ended"):
            # Every round completed and the server ended the run cleanly; NVFlare flags the job (or kept it
            # running) because a site was lost on the way: the result stands, with a note.
            reason = state.error or f"NVFlare reported {self.nvflare_status}"
            return JobState(FINISHED, note=f"every round completed, but {reason} (a site was lost during the job)")
        if state.status == FINISHED:
            records = self._rounds_from_result()
            if not (self.result_dir / "workspace" / MODEL_FILE).is_file():
                return JobState(FAILED, self._error_from_log() or "the job finished without a global model")
            if self.num_rounds and len(records) < self.num_rounds:
                return JobState(
                    FAILED,
                    self._error_from_log() or f"the job stopped after {len(records)} of {self.num_rounds} rounds",
                )
        elif state.status == FAILED:
            detail = self._error_from_log()
            if detail:
                return JobState(FAILED, f"{state.error}: {detail}")
        return state

    def _live_rounds(self) -> list[RoundRecord]:
        try:
            text = self._link.call(lambda s: s.cat_target("server", file=f"{self.id}/{REMOTE_ROUNDS_FILE}"))
        except ResonTechError as exc:  # a missed poll is not worth breaking the dashboard for
            log.debug("job %s: round records not readable now: %s", self.id, exc)
            return self._rounds
        if text.startswith("cat:"):  # no round finished yet (or not our recorder)
            return self._rounds
        return parse_lines(text.splitlines()) or self._rounds

    def _rounds_from_result(self) -> list[RoundRecord]:
        workspace = self.result_dir / "workspace"
        for name in (REMOTE_ROUNDS_FILE, ROUNDS_FILE):
            path = workspace / name
            if path.is_file():
                return parse_lines(path.read_text(encoding="utf-8").splitlines())
        return []

    def _learn_from(self, records: list[RoundRecord]) -> None:
        if records and not self.num_rounds:
            self.num_rounds = records[-1].num_rounds
        if records and not self.clients:
            self.clients = sorted({name for r in records for name in r.clients})

    def _download(self) -> None:
        """Fetch the job result once (records, final model, server logs) into ``result_dir``."""
        if (self.result_dir / "workspace").is_dir():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.state_dir / f"download-{uuid.uuid4().hex[:8]}"
        try:
            location = self._link.call(lambda s: s.download_job_result(self.id, str(scratch)))
            if not location or not Path(location).is_dir():
                raise ResonTechError(f"the NVFlare server returned no result for job {self.id}")
            shutil.rmtree(self.result_dir, ignore_errors=True)
            Path(location).rename(self.result_dir)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _error_from_log(self) -> str | None:
        workspace = self.result_dir / "workspace"
        for name in ("error_log.txt", "log.txt"):
            try:
                lines = (workspace / name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in reversed(lines):
                if " ERROR " in line or "Exception" in line or "Error:" in line:
                    return line.strip()[-500:]
        return None


def _read_json_text(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
