"""The ``resontech`` target: shards and the job folder to the platform's store, then the job to its REST API.

Uploads go through URLs the platform presigns (see ``uploads.py``): the notebook holds no S3 keys, and
each object lands in this account's own prefix, content-addressed, so re-submitting unchanged shards
sends no shard bytes again. The job names its files by sha256. The submit carries an
``Idempotency-Key``, so a retried request never starts a second job. Status, rounds, result and
abort then go through the REST API.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from typing import Any

from ...errors import AuthError
from ...job.handle import Job, JobState, jobs_home
from ...records.rounds import RoundRecord
from ..base import BuiltJob, Target
from .rest import PlatformClient
from .storage import UploadReport
from .uploads import PresignedUploader

log = logging.getLogger(__name__)


class ResonTechTarget(Target):
    name = "resontech"

    def client(self) -> PlatformClient:
        return PlatformClient(self.config)

    def uploader(self, client: PlatformClient | None = None) -> PresignedUploader:
        return PresignedUploader(client or self.client())

    def preflight(self) -> None:
        """Settings and login, checked before anything is built or uploaded."""
        self._ready()

    def _ready(self) -> tuple[PlatformClient, PresignedUploader]:
        self.config.require_platform()
        client = self.client()
        try:
            client.ensure_login()  # fail before uploading anything
        except AuthError:
            if not self.config.password:
                raise AuthError(
                    f"log in to {self.config.base_url} first: run %fl_login (or set RESONTECH_PASSWORD)"
                ) from None
            raise
        return client, self.uploader(client)

    def submit(self, built: BuiltJob) -> ResonTechJob:
        client, uploader = self._ready()
        report = uploader.upload_files(built.shards)
        job_report = uploader.upload_dir_as_zip(built.job_dir, name="job")
        report.merge(job_report)
        spec = {
            "name": built.federation.job_name,
            "job_sha256": job_report.sha256["job"],
            "shards": {site: report.sha256[site] for site in built.shards},
            "num_rounds": built.federation.num_rounds,
            "min_clients": built.federation.min_clients,
            "class_name": built.class_name,
            "training": built.training.to_dict(),
        }
        info = client.submit(spec, idempotency_key=idempotency_key(spec))
        log.info(
            "submitted %s to %s (uploaded %d bytes, %d bytes already on the platform)",
            info["id"],
            self.config.base_url,
            report.bytes_uploaded,
            report.bytes_skipped,
        )
        _remember(info["id"], self.config.base_url, self.config.email)
        job = ResonTechJob(client, info)
        job.upload_report = report
        return job

    def attach(self, job_id: str) -> ResonTechJob:
        client = self.client()
        return ResonTechJob(client, client.status(job_id))


def idempotency_key(spec: dict[str, Any]) -> str:
    """One key per submit call: the job's content plus a fresh uuid (two calls make two jobs)."""
    content = json.dumps([spec["job_sha256"], sorted(spec["shards"].items())])
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
    return f"rt-{digest}-{uuid.uuid4().hex}"


def _remember(job_id: str, base_url: str, email: str) -> None:
    """Write the index entry ``attach(job_id)`` uses to find this job's target."""
    index = jobs_home() / "index"
    index.mkdir(parents=True, exist_ok=True)
    entry = {"target": ResonTechTarget.name, "base_url": base_url, "email": email, "submitted_at": time.time()}
    (index / f"{job_id}.json").write_text(json.dumps(entry), encoding="utf-8")


class ResonTechJob(Job):
    """A job on the ResonTech platform, followed through its REST API."""

    target = "resontech"

    def __init__(self, client: PlatformClient, info: dict[str, Any]) -> None:
        super().__init__(
            info["id"], num_rounds=int(info.get("num_rounds") or 0), clients=info.get("sites"), name=info.get("name")
        )
        self.client = client
        self.submitted_at = float(info.get("created_at") or time.time())
        self.upload_report: UploadReport | None = None
        self._state = JobState(info.get("status") or "SUBMITTED", info.get("error"))

    def _poll(self) -> JobState:
        info = self.client.status(self.id)
        return JobState(info["status"], info.get("error"))

    def _fetch_rounds(self) -> list[RoundRecord]:
        return self.client.rounds(self.id)

    def _fetch_evaluation(self) -> dict[str, Any]:
        return self.client.evaluation(self.id)

    def _fetch_result(self, which: str = "final") -> dict[str, Any]:
        import torch

        data = self.client.result(self.id, which)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def _abort(self) -> None:
        self.client.abort(self.id)
