"""The ``local`` target: NVFlare's simulator in a detached child process, one site per shard.

State lives in ``<home>/jobs/<job id>/`` (``state.json``, the job folder, the simulator
workspace and its log), so ``attach`` works from any process, also after a kernel restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ...errors import JobNotFoundError, SubmitError
from ...job.handle import Job, JobState, jobs_home, statistics_end
from ...jobcode import rt_files, rt_shm
from ...records.rounds import RoundRecord, parse_lines
from ...records.status import ABORTED, FAILED, FINISHED, RUNNING
from ..base import BuiltJob, Target
from ..processes import processes_using, stop_all, stop_process_group
from . import warm
from .simulator import simulator_command, simulator_env

log = logging.getLogger(__name__)

ROUNDS_FILE = "rounds.jsonl"
STATUS_FILE = "rt_status.json"  # the server's word on how the run ended (jobcode/rt_recorder.py)
EVALUATION_FILE = "evaluation.json"  # best round and cross-site results (jobcode/rt_evaluation.py)
HANG_GRACE_S = 15.0  # the server stopped the run; a simulator still up after this is stuck on a hung site
SITES_END_S = 0.2  # the server's run ended: the time the sites get for their own end of the run
SITE_FAILURE = re.compile(r"(?<!of )round (?P<round>\d+) failed on (?P<site>[\w.-]+): (?P<message>.*)")
MODEL_FILES = {"final": rt_files.GLOBAL_MODEL_FILE, "best": rt_files.BEST_MODEL_FILE}
_CHILDREN: dict[str, subprocess.Popen] = {}  # reaped by this process when it started them


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Launch:
    """How to start a job's simulator: the command, its environment, and what to run in the child first."""

    command: list[str]
    env: dict[str, str]
    preexec_fn: Callable[[], None] | None = None


# (command, environment, the job's state folder) -> how to start it; the platform's sandbox is one.
Launcher = Callable[[list[str], dict[str, str], Path], Launch]


class LocalTarget(Target):
    name = "local"

    def __init__(self, config: Any = None, home: str | Path | None = None, launcher: Launcher | None = None) -> None:
        super().__init__(config)
        self.home = Path(home) if home is not None else jobs_home()
        self.launcher = launcher

    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    def submit(self, built: BuiltJob, job_id: str | None = None) -> LocalJob:
        job_id = job_id or new_job_id(built.federation.job_name)
        rt_shm.sweep()  # shared-memory weights of simulators that died with no one watching
        state_dir = self.job_dir(job_id)
        state_dir.mkdir(parents=True)
        job_folder = state_dir / "job"
        shutil.copytree(built.job_dir, job_folder)
        workspace = state_dir / "workspace"
        sites = sorted(built.shards)
        command = simulator_command(job_folder, workspace, sites)
        launch = Launch(command, simulator_env(len(sites)))
        if self.launcher is not None:
            launch = self.launcher(launch.command, launch.env, state_dir)
        with open(state_dir / "simulator.log", "wb") as log_file:
            proc = None
            if self.launcher is None:  # the platform's sandbox keeps its cold start
                proc = warm.take(launch.command, launch.env, state_dir, state_dir / "simulator.log")
                warm.warm_up(after=workspace)  # for the next submit
            try:
                proc = proc or subprocess.Popen(
                    launch.command,
                    cwd=state_dir,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=launch.env,
                    start_new_session=True,
                    preexec_fn=launch.preexec_fn,  # noqa: PLW1509 - only setrlimit calls
                )
            except OSError as exc:
                shutil.rmtree(state_dir, ignore_errors=True)
                raise SubmitError(f"could not start NVFlare's simulator: {exc}") from None
        _CHILDREN[job_id] = proc
        state = {
            "id": job_id,
            "name": built.federation.job_name,
            "num_rounds": built.federation.num_rounds,
            "sites": sites,
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "submitted_at": time.time(),
            "status": RUNNING,
            "error": None,
        }
        _write_state(state_dir, state)
        log.info("local job %s started (pid %s)", job_id, proc.pid)
        return LocalJob(state_dir)

    @classmethod
    def warm_up(cls) -> None:
        """Start a simulator process that imports torch and NVFlare now, for the next job (``warm``)."""
        warm.warm_up()

    def attach(self, job_id: str) -> LocalJob:
        state_dir = self.job_dir(job_id)
        if not (state_dir / "state.json").is_file():
            raise JobNotFoundError(f"no local job {job_id!r} under {self.home / 'jobs'}: check the id (%fl_status)")
        return LocalJob(state_dir)


class LocalJob(Job):
    """A job running (or run) in NVFlare's simulator on this machine."""

    target = "local"
    poll_interval = 0.25  # a look at a few small files: ``wait()`` returns soon after the end

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        state = _read_state(self.state_dir)
        super().__init__(state["id"], num_rounds=state["num_rounds"], clients=state["sites"], name=state["name"])
        self.submitted_at = state["submitted_at"]
        self._rounds_path: Path | None = None
        self._model_path: Path | None = None

    @property
    def workspace(self) -> Path:
        return self.state_dir / "workspace"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "simulator.log"

    @property
    def pid(self) -> int | None:
        """The simulator's process (or the sandbox around it)."""
        return _read_state(self.state_dir).get("pid")

    @property
    def model_path(self) -> Path | None:
        """The global model file the server saved, once it exists."""
        return self._find(f"{rt_files.MODEL_DIR}/{MODEL_FILES['final']}")

    def _poll(self) -> JobState:
        state = _read_state(self.state_dir)
        if state["status"] in (FINISHED, FAILED, ABORTED):
            return JobState(state["status"], state.get("error"), state.get("note"))
        server = self._server_status()
        if _process_alive(self.id, state):
            since = time.time() - float(server.get("at") or 0)
            if not server or since < (SITES_END_S if server.get("ended") else HANG_GRACE_S):
                return JobState(RUNNING)
            if not server.get("ended"):  # the server stopped the run, yet the simulator is still up: a hung site
                log.warning("job %s: the server stopped the run but the simulator is still up; stopping it", self.id)
            # After the server's end the simulator only winds down (fixed waits of 3-5 s in NVFlare, and 2 s
            # more to take a SIGTERM): the results are all written, so the job ends now.
            self._stop_processes(state, grace=0.2 if server.get("ended") else 10.0)
        else:  # the simulator died (killed from outside, crashed): its server and sites may still be running
            stop_all(processes_using(self.workspace), grace=2.0)
        for folder in rt_shm.dirs_of(state["pid"]):  # a simulator that died on its own left its folder
            rt_shm.remove_dir(folder)
        final = self._final_state(server)
        state.update(status=final.status, error=final.error, note=final.note, ended_at=time.time())
        _write_state(self.state_dir, state)
        return final

    def _final_state(self, server: dict[str, Any]) -> JobState:
        records = self._fetch_rounds()
        if server.get("error"):
            return JobState(FAILED, str(server["error"]))
        statistics = statistics_end(self._fetch_evaluation()) if server.get("ended") else None
        if statistics is not None:  # a statistics job: no rounds, no model, its counts are its result
            return statistics
        if len(records) >= self.num_rounds and self.model_path is not None:
            return JobState(FINISHED)
        site_failure = self._site_failure_from_log()
        if site_failure:
            return JobState(FAILED, site_failure)
        stopped = f"NVFlare's simulator stopped after {len(records)} of {self.num_rounds} round(s)"
        if not server.get("ended"):
            stopped += " before its run ended (was it killed from outside?)"
        last = self._last_error_in_log()
        return JobState(FAILED, f"{stopped}; " + (f"last error in its log: {last}" if last else f"see {self.log_path}"))

    def _server_status(self) -> dict[str, Any]:
        return _read_json(self._find(STATUS_FILE))

    def _fetch_evaluation(self) -> dict[str, Any]:
        return _read_json(self._find(EVALUATION_FILE))

    def _fetch_rounds(self) -> list[RoundRecord]:
        path = self._rounds_path or self._find(ROUNDS_FILE)
        if path is None:
            return []
        self._rounds_path = path
        try:
            return parse_lines(path.read_text(encoding="utf-8").splitlines())
        except OSError:
            return []

    def _fetch_result(self, which: str = "final") -> dict[str, Any]:
        import torch

        path = self._find(f"{rt_files.MODEL_DIR}/{MODEL_FILES[which]}")
        if path is None and which == "best":
            raise JobNotFoundError(
                f"job {self.id} kept no best model: set FederationConfig.select_metric to a validation metric"
            )
        if path is None:
            raise JobNotFoundError(f"job {self.id} finished but its global model is missing under {self.workspace}")
        return torch.load(path, map_location="cpu", weights_only=True)

    def _stop_processes(self, state: dict[str, Any], grace: float = 10.0) -> None:
        stop_process_group(state["pid"], state.get("create_time"), grace=grace)
        # a site's worker is a session of its own, and the simulator may have started one after the group was listed
        stop_all(processes_using(self.workspace), grace=min(grace, 5.0))
        child = _CHILDREN.pop(self.id, None)
        if child is not None:
            child.wait(timeout=10)
        for folder in rt_shm.dirs_of(state["pid"]):  # the simulator removes its own, unless it was killed
            rt_shm.remove_dir(folder)

    def _abort(self) -> None:
        state = _read_state(self.state_dir)
        self._stop_processes(state)
        state.update(status=ABORTED, error="aborted by the user", ended_at=time.time())
        _write_state(self.state_dir, state)

    def _find(self, relative: str) -> Path | None:
        server = self.workspace / "server"
        if not server.is_dir():
            return None
        for candidate in sorted(server.glob(f"*/{relative}")):
            return candidate
        return None

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def _site_failure_from_log(self) -> str | None:
        """A site's own failure (``round N failed on site: message``), rounds shown from 1."""
        for line in self._log_lines():
            match = SITE_FAILURE.search(line)
            if match:
                shown = int(match["round"]) + 1
                return f"{match['site']} failed round {shown}: {match['message'].strip()}"[:500]
        return None

    def _last_error_in_log(self) -> str | None:
        for line in reversed(self._log_lines()):
            if " ERROR " in line or line.startswith(("Error", "Traceback")) or "Exception" in line:
                return line.strip()[-300:]
        return None


# -- process helpers ---------------------------------------------------------------


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _read_state(state_dir: Path) -> dict[str, Any]:
    return json.loads(_state_path(state_dir).read_text(encoding="utf-8"))


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = _state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, _state_path(state_dir))


def _process_alive(job_id: str, state: dict[str, Any]) -> bool:
    child = _CHILDREN.get(job_id)
    if child is not None:
        return child.poll() is None
    try:
        proc = psutil.Process(state["pid"])
        if state.get("create_time") and abs(proc.create_time() - state["create_time"]) > 1:
            return False  # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
