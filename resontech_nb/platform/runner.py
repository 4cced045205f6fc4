"""Runs platform jobs: fetch the job ZIP and shards from the owner's prefix in S3, then hand the job to NVFlare.

A job's files go to ``<data>/jobs/<id>/`` (``job.zip``, ``job/``, ``shards/``). By default the NVFlare
run is a ``LocalTarget`` job under ``<data>/nvflare`` with the same id; its simulator runs in a
detached process, so it keeps going while the server restarts, and ``attach`` finds it again.
With ``nvflare_startup_kit`` set, jobs go to that NVFlare deployment instead (the ``nvflare`` target),
and the platform job remembers the deployment's job id.

At most ``max_running`` jobs are active (SUBMITTED or RUNNING) at once; the others wait as QUEUED,
oldest first, and a scheduler thread starts them as slots free up. The queue is the jobs table, so
it survives a restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from ..config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from ..errors import JobNotFoundError, ResonTechError
from ..job.handle import Job, JobState
from ..records.rounds import RoundRecord
from ..records.status import ABORTED, FAILED, FINAL_STATES, FINISHED, QUEUED, RUNNING, SUBMITTED
from ..targets.resontech.storage import S3Storage
from .sandbox import Sandbox
from .store import JobRow, Store
from .uploads import UserObjects

log = logging.getLogger(__name__)


def default_max_running() -> int:
    """One running job per CPU core (each simulator job runs its sites in turn on one process pool)."""
    return max(1, os.cpu_count() or 1)


class JobRunner:
    """Queues, prepares and starts jobs in the background; answers status, rounds, result and abort."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        s3: ResonTechConfig,
        max_running: int | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        """``sandbox``: where each job's NVFlare run is confined (None: unsandboxed, single-user only)."""
        self.sandbox = sandbox
        self.max_running = max_running or default_max_running()
        if self.max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.store = store
        self.data_dir = Path(data_dir)
        self.s3 = s3
        self.on_deployment = bool(s3.nvflare_startup_kit)
        self._deployment: Any = None
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._launch_lock = threading.Lock()
        self._limit_lock = threading.Lock()
        self._schedule_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None
        # The server's S3 client is made now: it takes its keys from the environment the server started with.
        self._objects: UserObjects | None = UserObjects(S3Storage(s3)) if s3.s3_bucket else None

    @property
    def objects(self) -> UserObjects:
        """Each user's objects in the bucket (uploads are planned and jobs' files read through it)."""
        if self._objects is None:
            self._objects = UserObjects(S3Storage(self.s3))
        return self._objects

    @property
    def nvflare_home(self) -> Path:
        return self.data_dir / "nvflare"

    def _target(self, shards_dir: Path | None = None) -> Any:
        """The target jobs run on; with ``shards_dir`` (a launch), the sandbox lets the job read it."""
        if self.on_deployment:
            if self._deployment is None:
                from ..targets.nvflare.target import NVFlareTarget

                self._deployment = NVFlareTarget(
                    ResonTechConfig(
                        nvflare_startup_kit=self.s3.nvflare_startup_kit, nvflare_username=self.s3.nvflare_username
                    )
                )
            return self._deployment
        from ..targets.local.target import LocalTarget

        launcher = None
        if self.sandbox is not None and shards_dir is not None:
            launcher = self.sandbox.launcher(readable=[shards_dir])
        return LocalTarget(ResonTechConfig(), home=self.nvflare_home, launcher=launcher)

    # -- queue --------------------------------------------------------------------------
    def schedule(self) -> None:
        """Move the oldest QUEUED jobs to SUBMITTED (and start them) while a slot is free."""
        with self._schedule_lock:
            active = [self.status(job) for job in self.store.jobs_with_status(SUBMITTED, RUNNING)]
            free = self.max_running - sum(1 for job in active if job.status in (SUBMITTED, RUNNING))
            if free <= 0:
                return
            for job in self.store.jobs_with_status(QUEUED)[:free]:
                if self.store.transition(job.id, QUEUED, SUBMITTED):  # an abort in between wins
                    log.info("job %s leaves the queue", job.id)
                    self.start(self.store.job(job.id) or job)

    def queue_position(self, job: JobRow) -> int | None:
        """1 for the next job to start; None unless the job is QUEUED."""
        if job.status != QUEUED:
            return None
        ids = [j.id for j in self.store.jobs_with_status(QUEUED)]
        return ids.index(job.id) + 1 if job.id in ids else None

    def wake(self) -> None:
        """Ask the scheduler to look at the queue now (a job was added or ended)."""
        self._wake.set()

    def start_scheduler(self, interval: float = 1.0) -> None:
        if self._scheduler is not None:
            return
        self._stopping.clear()

        def loop() -> None:
            while not self._stopping.is_set():
                try:
                    self.schedule()
                except Exception:  # noqa: BLE001 - the loop must outlive one bad tick
                    log.exception("scheduling failed; trying again")
                self._wake.wait(interval)
                self._wake.clear()

        self._scheduler = threading.Thread(target=loop, name="platform-scheduler", daemon=True)
        self._scheduler.start()

    def stop_scheduler(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=30)
            self._scheduler = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self, job: JobRow) -> None:
        """Prepare and launch ``job`` in a background thread (downloads can take a while)."""
        with self._lock:
            if job.id in self._threads and self._threads[job.id].is_alive():
                return
            thread = threading.Thread(target=self._prepare_and_launch, args=(job.id,), daemon=True)
            self._threads[job.id] = thread
        thread.start()

    def resume(self) -> None:
        """After a restart: start again every job that was accepted but never reached NVFlare."""
        for job in self.store.jobs():
            if job.status == SUBMITTED and job.local_id is None:
                log.info("resuming preparation of job %s", job.id)
                self.start(job)

    def join(self, timeout: float = 30.0) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def _prepare_and_launch(self, job_id: str) -> None:
        job = self.store.job(job_id)
        if job is None or job.status != SUBMITTED:
            return
        try:
            built = self._prepare(job)
            with self._launch_lock:  # an abort either comes before the launch or sees the local job
                current = self.store.job(job_id)
                if current is None or current.status != SUBMITTED:  # aborted while downloading
                    return
                if self.on_deployment:
                    launched = self._target().submit(built)
                    self.store.update_job(job.id, local_id=launched.id)
                    log.info("job %s of %s submitted to NVFlare as %s", job.id, job.owner, launched.id)
                    return
                existing = self.nvflare_home / "jobs" / job.id
                if (existing / "state.json").is_file():  # launched just before a restart: adopt it
                    self.store.update_job(job.id, local_id=job.id)
                    return
                if existing.exists():  # a launch cut short before it started anything
                    shutil.rmtree(existing)
                self._target(self.data_dir / "jobs" / job.id / "shards").submit(built, job_id=job.id)
                self.store.update_job(job.id, local_id=job.id)
            log.info("job %s of %s started on NVFlare", job.id, job.owner)
        except ResonTechError as exc:
            log.warning("job %s failed before it started: %s", job.id, exc)
            self.store.update_job(job.id, status=FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure must end up on the job, not in a dead thread
            log.exception("job %s failed before it started", job.id)
            self.store.update_job(job.id, status=FAILED, error=f"{type(exc).__name__}: {exc}")

    def _prepare(self, job: JobRow) -> Any:
        from ..building.builder import read_job_info, set_shards
        from ..targets.base import BuiltJob

        work = self.data_dir / "jobs" / job.id
        work.mkdir(parents=True, exist_ok=True)
        request = job.request
        objects = self.objects  # only ever under the owner's own prefix
        archive = objects.download(job.owner, "job ZIP", request["job_sha256"], work / "job.zip")
        job_dir = work / "job"
        if job_dir.exists():
            shutil.rmtree(job_dir)
        _safe_extract(archive, job_dir)
        shards: dict[str, Path] = {}
        for site, sha256 in sorted(request["shards"].items()):
            dest = work / "shards" / f"{site}.zip"
            shards[site] = objects.download(job.owner, f"shard of {site}", sha256, dest)
        set_shards(job_dir, shards)
        info = read_job_info(job_dir)
        federation = FederationConfig(
            num_rounds=info["num_rounds"],
            min_clients=info["min_clients"],
            job_name=info["name"],
        )
        return BuiltJob(job_dir, shards, TrainingConfig(), federation, job.request.get("class_name", ""))

    # -- queries ----------------------------------------------------------------------
    def local_job(self, job: JobRow) -> Job | None:
        if job.local_id is None:
            return None
        try:
            return self._target().attach(job.local_id)
        except JobNotFoundError:
            return None

    def status(self, job: JobRow) -> JobRow:
        """The job with its status brought up to date (and saved once it is final)."""
        if job.status in FINAL_STATES:
            return job
        local = self.local_job(job)
        if local is None:
            return job
        state = local.refresh()
        if state.status == RUNNING and self.sandbox is not None and not self.on_deployment:
            over = self._over_limit(local)
            if over:
                with self._limit_lock:  # the scheduler and API threads look at once: one of them stops it
                    current = self.store.job(job.id) or job
                    if current.status in FINAL_STATES:
                        return current
                    self.store.update_job(job.id, status=FAILED, error=f"the job {over} and was stopped")
                log.warning("job %s %s: stopping it", job.id, over)
                threading.Thread(target=self._stop, args=(local,), name=f"stop-{job.id}", daemon=True).start()
                return self.store.job(job.id) or job
        if state.status == FAILED and self.sandbox is not None:
            state = JobState(state.status, self.sandbox.explain(state.error), state.note)
        if state.status != job.status or state.error != job.error:
            with self._limit_lock:
                current = self.store.job(job.id) or job
                if current.status in FINAL_STATES:  # stopped for a limit meanwhile: that error stays
                    return current
                self.store.update_job(job.id, status=state.status, error=state.error)
            job = self.store.job(job.id) or job
            if job.status in FINAL_STATES:
                self.wake()  # a slot is free
        return job

    def _stop(self, local: Any) -> None:
        """Stop a job's processes (in the background: a thousand of them take a while), then free its slot."""
        try:
            local.abort()
        except Exception:  # noqa: BLE001 - logged; the job is FAILED already
            log.exception("stopping job %s failed", local.id)
        self.wake()

    def _over_limit(self, local: Any) -> str | None:
        """Why a sandboxed job must be stopped now (wall time, or its processes at their limit), or None."""
        limits = self.sandbox.limits  # type: ignore[union-attr]
        if time.time() - local.submitted_at > limits.wall_seconds:
            return f"ran past its wall-time limit of {limits.wall_seconds:g} s"
        pid = local.pid
        if pid and self.sandbox.tasks(pid) >= limits.processes - 16:  # type: ignore[union-attr]
            return f"hit its process limit ({limits.processes} processes and threads: it forks without end?)"
        return None

    def rounds(self, job: JobRow) -> list[RoundRecord]:
        local = self.local_job(job)
        return local.rounds if local is not None else []

    def evaluation(self, job: JobRow) -> dict[str, Any]:
        """``{"best_round": int | None, "cross_site": {model: {site: metrics}}}`` as NVFlare recorded it; a
        statistics job's ``data_summary`` (``{site: counts}``, only counts: the sites withheld small bins) and
        ``data_summary_errors`` (``{site: why}``) as its server wrote them."""
        local = self.local_job(job)
        if local is None:
            return {"best_round": None, "cross_site": {}}
        found = {"best_round": local.best_round, "cross_site": local.cross_site}
        report = local.server_report
        for key in ("data_summary", "data_summary_errors"):
            if report.get(key) is not None:
                found[key] = report[key]
        return found

    def result_path(self, job: JobRow, which: str = "final") -> Path | None:
        """The global model file (``which``: "final" or "best"), once the job has FINISHED.

        Raises ``JobNotFoundError`` when the job kept no such model (no ``select_metric`` for "best").
        """
        job = self.status(job)
        if job.status != FINISHED:
            return None
        local = self.local_job(job)
        if local is None:
            return None
        if which == "final" and not self.on_deployment and local.model_path is not None:
            return local.model_path
        path = self.data_dir / "jobs" / job.id / f"result-{which}.pt"
        if not path.is_file():  # fetched once from NVFlare's workspace or deployment, then served from here
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(local.result(which), tmp)
            os.replace(tmp, path)
        return path

    def abort(self, job: JobRow) -> JobRow:
        with self._launch_lock:
            job = self.status(self.store.job(job.id) or job)
            if job.status in FINAL_STATES:
                return job
            local = self.local_job(job)
            if local is not None:
                local.abort()
            self.store.update_job(job.id, status=ABORTED, error="aborted by the user")
        self.wake()
        return self.store.job(job.id) or job


def _safe_extract(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into ``dest``, refusing entries that would land outside it."""
    dest.mkdir(parents=True)
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if root not in target.parents and target != root:
                raise ResonTechError(f"job ZIP entry {info.filename!r} escapes the job folder: rebuild the job")
        zf.extractall(dest)
