"""The Python API the magics wrap: ``build_job``, ``submit``, ``attach``.

A script or CI job uses these directly; nothing here imports IPython or ipywidgets.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .building import builder
from .config.settings import FederationConfig, ResonTechConfig, TrainingConfig, as_config
from .errors import ConfigError, JobBuildError, JobFailedError, JobNotFoundError
from .job.handle import Job, jobs_home
from .targets import BuiltJob, check_job_id, get_target

if TYPE_CHECKING:  # pragma: no cover
    from .capture import ModelSpec
    from .data.shards import ShardSet
    from .data.summary import DataSummary

log = logging.getLogger(__name__)

ShardsArg = "str | Path | Sequence[str | Path] | ShardSet"


def _shard_set(shards: Any, training: TrainingConfig) -> ShardSet:
    from .data.shards import ShardSet, validate_shards

    if isinstance(shards, ShardSet):
        return shards
    return validate_shards(shards, training)


def build_job(
    spec: ModelSpec,
    shards: Any,
    training: TrainingConfig | Mapping[str, Any] | None = None,
    federation: FederationConfig | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    executor: type | None = None,
    persistor: type | None = None,
    initial_weights: Mapping[str, Any] | None = None,
) -> Path:
    """Validate the shards and write the NVFlare job folder; return its path (nothing is submitted).

    ``initial_weights`` (a state_dict, e.g. pretrained weights) is where round 0 starts.
    """
    training = as_config(TrainingConfig, training)
    federation = as_config(FederationConfig, federation)
    shard_set = _shard_set(shards, training)
    return _build(spec, shard_set, training, federation, out, executor, persistor, initial_weights)


def _build(
    spec: ModelSpec,
    shard_set: ShardSet,
    training: TrainingConfig,
    federation: FederationConfig,
    out: str | Path | None,
    executor: type | None,
    persistor: type | None,
    initial_weights: Mapping[str, Any] | None = None,
    submitting: bool = False,
) -> Path:
    try:
        return builder.build_job(
            spec, shard_set, training, federation, out, executor, persistor, initial_weights, submitting=submitting
        )
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise JobBuildError(
            f"cannot write the job folder{where} ({(exc.strerror or type(exc).__name__).lower()}): "
            "choose a folder you can write"
        ) from None


def submit(
    spec: ModelSpec,
    shards: Any,
    training: TrainingConfig | Mapping[str, Any] | None = None,
    federation: FederationConfig | Mapping[str, Any] | None = None,
    target: str = "local",
    config: ResonTechConfig | Mapping[str, Any] | None = None,
    executor: type | None = None,
    persistor: type | None = None,
    initial_weights: Mapping[str, Any] | None = None,
) -> Job:
    """Validate, build and submit; return the running ``Job`` without waiting for it.

    ``initial_weights`` (a state_dict) is where round 0 starts; keys and shapes are checked first.
    """
    training = as_config(TrainingConfig, training)
    federation = as_config(FederationConfig, federation)
    config = as_config(ResonTechConfig, config)
    jobs_home()  # an unwritable home fails before anything starts
    runner = get_target(target, config)  # unknown target fails before anything is built
    runner.preflight()  # settings, login, endpoints, bucket
    _check_tracking(federation)  # an unreachable tracking server fails before anything is submitted
    shard_set = _shard_set(shards, training)
    # The folder only lives until the target has copied or uploaded it: a failed submit leaves nothing.
    with tempfile.TemporaryDirectory(prefix="rt_build_") as tmp:
        out = Path(tmp) / federation.job_name
        job_dir = _build(spec, shard_set, training, federation, out, executor, persistor, initial_weights, True)
        built = BuiltJob(job_dir, dict(shard_set.shards), training, federation, spec.class_name)
        job = runner.submit(built)
    job.validation_metrics = _validation_metrics(training, federation)
    job.settings = job_settings(target, spec, training, federation)
    job.settings["data_summary"] = _data_brief(shard_set, training)
    _remember(job.id, target, config, job.settings)
    _follow(job, federation.tracking, federation.tracking_models)
    return job


def _data_brief(shard_set: ShardSet, training: TrainingConfig) -> dict[str, Any]:
    """The shards' site x class counts for the job's dashboard (the manifests are at hand at submit)."""
    from .data.summary import data_summary as local_summary

    return local_summary(shard_set, training, sample=0).brief()


def data_summary(
    shards: Any,
    training: TrainingConfig | Mapping[str, Any] | None = None,
    *,
    target: str | None = None,
    config: ResonTechConfig | Mapping[str, Any] | None = None,
    min_count: int = 0,
    sample: int = 64,
    timeout: float | None = 600,
) -> DataSummary:
    """Each site's rows, labels and images, a site x class heatmap and a skew verdict (``DataSummary``).

    Without ``target`` the manifests are read here. With a ``target`` (``"local"``, ``"nvflare"``, ``"resontech"``:
    the same ``config`` as ``submit``) a statistics job runs on the sites and only counts come back: each count
    below ``min_count`` (but not zero) is withheld on its site. On ``"local"``/``"nvflare"`` ``shards`` may be
    ``{site: path on that site}``, read by nobody but the site; on ``"resontech"`` they are uploaded as for training
    and the platform returns the counts only. ``sample``: entries per site opened for image sizes and modes.
    """
    from .data import summary

    training = as_config(TrainingConfig, training)
    if target is None:
        return summary.data_summary(shards, training, sample=sample, min_count=min_count)
    if min_count < 0:
        raise ConfigError(f"min_count must be >= 0, got {min_count}: pass 0 to withhold nothing")
    config = as_config(ResonTechConfig, config)
    jobs_home()
    runner = get_target(target, config)
    runner.preflight()
    sites = _site_shards(shards, training)
    federation = FederationConfig(num_rounds=1, min_clients=len(sites), job_name="rt_data_summary")
    with tempfile.TemporaryDirectory(prefix="rt_build_") as tmp:
        from .building.statistics_job import build_statistics_job

        job_dir = build_statistics_job(
            sites, training, federation, Path(tmp) / federation.job_name, min_count=min_count, sample=sample
        )
        job = runner.submit(BuiltJob(job_dir, sites, training, federation))
    job.wait(timeout, progress=False)
    found = job.server_report
    counts = found.get("data_summary")
    errors = found.get("data_summary_errors") or {}
    if not counts or errors:
        detail = "; ".join(f"{site}: {error}" for site, error in errors.items()) or job.error or "no counts came back"
        raise JobFailedError(f"the data summary job {job.id} failed ({detail}): fix the site's shard and run it again")
    return summary.summary_from_counts(counts, sites, training.num_classes, min_count)


def _site_shards(shards: Any, training: TrainingConfig) -> dict[str, Path]:
    """``{site: shard}``: a mapping as given (the paths are the sites' own, not read here), else validated here."""
    if isinstance(shards, Mapping):
        paths = {str(site): Path(path).expanduser() for site, path in shards.items()}
        return {site: path.resolve() if path.exists() else path for site, path in paths.items()}
    return dict(_shard_set(shards, training).shards)


def _validation_metrics(training: TrainingConfig, federation: FederationConfig) -> tuple[str, ...]:
    """The global model's validation metrics the rounds will carry: the text progress's columns."""
    metrics = ("loss", "accuracy") if training.val_fraction > 0 else ()
    select = federation.select_metric
    return metrics + ((select,) if select and select not in metrics else ())


def attach(
    job_id: str,
    target: str | None = None,
    config: ResonTechConfig | Mapping[str, Any] | None = None,
    tracking: str | None = None,
) -> Job:
    """A handle on an earlier job, e.g. after a kernel restart; ``target`` is looked up if not given.

    A job submitted with ``FederationConfig.tracking`` is followed again (only what its runs lack is logged);
    ``tracking`` names other sinks (``""``: none).
    """
    check_job_id(job_id)  # a path-like id never reaches the file system or a URL
    config = as_config(ResonTechConfig, config)
    entry = _recall(job_id, missing_ok=target is not None)
    job = get_target(target or entry.get("target", "local"), config).attach(job_id)
    job.settings = dict(entry.get("settings") or {})
    federation = job.settings.get("federation") or {}
    if tracking is not None:
        federation = {**federation, "tracking": tracking}
        _check_tracking(as_config(FederationConfig, {"tracking": tracking}))
    _follow(job, str(federation.get("tracking") or ""), bool(federation.get("tracking_models")))
    return job


def compare(
    jobs: Any,
    metric: str = "accuracy",
    display: bool = True,
    config: ResonTechConfig | Mapping[str, Any] | None = None,
) -> Any:
    """Jobs side by side: one figure of ``metric`` per round and a table (``.table``: a list of row dicts).

    ``jobs`` holds ``Job`` handles or job ids (ids work after a kernel restart). In a kernel, ``display=True``
    shows it under the cell and keeps it current while a job still runs.
    """
    from .dashboard.compare import Comparison

    if isinstance(jobs, (str, Job)):
        jobs = [jobs]
    handles = [job if isinstance(job, Job) else attach(str(job), config=config) for job in jobs]
    comparison = Comparison(handles, metric)
    if display:
        comparison.show()
    return comparison


def job_settings(target: str, spec: ModelSpec, training: TrainingConfig, federation: FederationConfig) -> dict:
    """What a job was built from, as ``Job.settings`` keeps it (no secrets: these configs hold none)."""
    return {
        "target": target,
        "model": spec.class_name,
        "parameters": spec.param_count,
        "training": training.to_dict(),
        "federation": federation.to_dict(),
    }


def _check_tracking(federation: FederationConfig) -> None:
    if not federation.tracking:
        return
    from .tracking import parse_sinks

    for sink in parse_sinks(federation.tracking):
        sink.check_reachable()


def _follow(job: Job, tracking: str, models: bool) -> None:
    if not tracking:
        return
    from .tracking.tracker import follow

    follow(job, tracking, models=models)


def list_jobs() -> list[dict[str, Any]]:
    """Jobs submitted from this machine, newest first."""
    index = jobs_home() / "index"
    entries = []
    for path in index.glob("*.json") if index.is_dir() else []:
        try:
            entries.append({"id": path.stem, **json.loads(path.read_text(encoding="utf-8"))})
        except (OSError, ValueError):
            continue
    return sorted(entries, key=lambda e: e.get("submitted_at", 0), reverse=True)


def _remember(job_id: str, target: str, config: ResonTechConfig, settings: dict | None = None) -> None:
    import time

    index = jobs_home() / "index"
    index.mkdir(parents=True, exist_ok=True)
    entry = {"target": target, "submitted_at": time.time(), "settings": settings or {}}
    if target == "resontech":
        entry["base_url"] = config.base_url
    (index / f"{job_id}.json").write_text(json.dumps(entry), encoding="utf-8")


def _recall(job_id: str, missing_ok: bool = False) -> dict[str, Any]:
    path = jobs_home() / "index" / f"{job_id}.json"
    if not path.is_file() and missing_ok:
        return {}
    if not path.is_file():
        if (jobs_home() / "jobs" / job_id).is_dir():
            return {"target": "local"}
        raise JobNotFoundError(
            f"no job {job_id!r} was submitted from this machine: check the id (api.list_jobs() lists them), "
            "or pass target= for a job submitted elsewhere"
        )
    return json.loads(path.read_text(encoding="utf-8"))
