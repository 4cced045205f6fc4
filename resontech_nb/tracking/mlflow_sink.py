"""``mlflow:URI``: one MLflow run per job in the experiment named after ``job_name``.

URI is a tracking server (``http(s)://...``), a ``sqlite:///`` database or a file store (``file:///...`` or a
folder). The run is found again by its ``resontech_job_id`` tag, so a tracker started again logs only what the
run lacks. The final and best models are kept as ``models/<which>_model.pt`` artifacts when asked.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..records.status import ABORTED, FAILED, FINISHED
from .base import Point, RunInfo, Sink, require

JOB_TAG = "resontech_job_id"
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics
_RUN_STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", ABORTED: "KILLED"}


def tracking_uri(where: str) -> str:
    """A plain folder becomes a ``file://`` URI; everything else is MLflow's."""
    if "://" in where or where.startswith("sqlite:"):
        return where
    return Path(where).expanduser().resolve().as_uri()


class MlflowSink(Sink):
    scheme = "mlflow"
    module = "mlflow"

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.uri = tracking_uri(where)
        self._client: Any = None
        self.run_id: str | None = None

    @classmethod
    def problem(cls, where: str) -> str:
        if not where:
            return "tracking mlflow: needs a tracking URI after 'mlflow:' (http://host:5000, sqlite:///f.db, a folder)"
        scheme = where.split("://", 1)[0] if "://" in where else ""
        if scheme and scheme not in ("http", "https", "file", "sqlite", "databricks", "postgresql", "mysql"):
            return f"tracking mlflow:{where}: unknown URI scheme {scheme!r} (use http(s)://, sqlite:///, file:///)"
        if scheme and ":" in urlsplit(where).netloc.rpartition("@")[0]:
            # The setting is kept with the job and shown in notes: a password in it would be written and shown too.
            shown = urlsplit(where)._replace(netloc="***@" + urlsplit(where).netloc.rpartition("@")[2]).geturl()
            return (
                f"tracking mlflow:{shown} holds a password: take it out of the URI and set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the kernel's environment instead"
            )
        return ""

    def check_reachable(self) -> None:
        super().check_reachable()
        if self.uri.startswith(("sqlite:", "file:")):
            # Opening the store here makes a database or folder that cannot be written fail before anything is
            # submitted, and a new sqlite store's tables are made now rather than while the job's rounds run
            # (MLflow keeps the opened store for the tracker's client of the same URI).
            try:
                self._mlflow().search_experiments(max_results=1)
            except Exception as exc:
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"the MLflow store {self.uri} cannot be opened ({reason}): fix the path in tracking=..., "
                    "or remove it"
                ) from None
            return
        if not self.uri.startswith(("http://", "https://")):
            return
        try:
            urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=5).close()
        except urllib.error.HTTPError:
            return  # it answered: a server is there
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(
                f"the MLflow tracking server {self.uri} does not answer ({reason}): start it (mlflow server ...), "
                "fix the URI in tracking=..., or remove it"
            ) from None

    def _mlflow(self) -> Any:
        if self._client is None:
            # A server that has gone away is retried by the tracker on its next look; MLflow's own retries (7,
            # with back-off) would hold the tracker for minutes instead. Only when the user has not chosen these.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            if self.uri.startswith("file:"):
                # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked: a tracking
                # setting that names a folder asks for it.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            tracking = require("mlflow.tracking", self.scheme)
            self._client = tracking.MlflowClient(tracking_uri=self.uri)
        return self._client

    def open(self, run: RunInfo) -> set[tuple[str, int]]:
        client = self._mlflow()
        experiment = client.get_experiment_by_name(run.name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(run.name)
            except Exception:  # made meanwhile by another job of the same name
                experiment_id = client.get_experiment_by_name(run.name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        found = client.search_runs([experiment_id], filter_string=f"tags.{JOB_TAG} = '{run.job_id}'", max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            return {(key, m.step) for key in found[0].data.metrics for m in client.get_metric_history(self.run_id, key)}
        created = client.create_run(experiment_id, tags={JOB_TAG: run.job_id, **run.tags}, run_name=run.job_id)
        self.run_id = created.info.run_id
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in sorted(run.params.items())]
        for start in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[start : start + 100])
        return set()

    def log(self, points: list[Point]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value, step in points]
        for start in range(0, len(metrics), BATCH):
            self._mlflow().log_batch(self.run_id, metrics=metrics[start : start + BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._mlflow().set_tag(self.run_id, key, str(value))

    def log_model(self, name: str, state_dict: dict[str, Any]) -> None:
        import torch

        with tempfile.TemporaryDirectory(prefix="rt_mlflow_") as tmp:
            path = Path(tmp) / f"{name}_model.pt"
            torch.save(state_dict, path)
            self._mlflow().log_artifact(self.run_id, str(path), artifact_path="models")

    def finish(self, status: str) -> None:
        self._mlflow().set_terminated(self.run_id, status=_RUN_STATUS.get(status, "FINISHED"))
