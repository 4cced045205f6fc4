"""The Python API the magics wrap: ``build_job``, ``submit``, ``attach``.

A script or CI job uses these directly; nothing here imports IPython or ipywidgets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import jobbuilder
from .config import FederationConfig, ResonTechConfig, TrainingConfig, as_config
from .errors import JobNotFoundError
from .job import Job, jobs_home
from .targets import BuiltJob, get_target

if TYPE_CHECKING:  # pragma: no cover
    from .capture import ModelSpec
    from .shards import ShardSet

log = logging.getLogger(__name__)

ShardsArg = "str | Path | Sequence[str | Path] | ShardSet"


def _shard_set(shards: Any, training: TrainingConfig) -> ShardSet:
    from .shards import ShardSet, validate_shards

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
    return jobbuilder.build_job(spec, shard_set, training, federation, out, executor, persistor, initial_weights)


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
    runner = get_target(target, config)  # unknown target fails before anything is built
    shard_set = _shard_set(shards, training)
    job_dir = jobbuilder.build_job(spec, shard_set, training, federation, None, executor, persistor, initial_weights)
    built = BuiltJob(job_dir, dict(shard_set.shards), training, federation, spec.class_name)
    job = runner.submit(built)
    _remember(job.id, target, config)
    return job


def attach(job_id: str, target: str | None = None, config: ResonTechConfig | Mapping[str, Any] | None = None) -> Job:
    """A handle on an earlier job, e.g. after a kernel restart; ``target`` is looked up if not given."""
    config = as_config(ResonTechConfig, config)
    if target is None:
        target = _recall(job_id).get("target", "local")
    return get_target(target, config).attach(job_id)


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


def _remember(job_id: str, target: str, config: ResonTechConfig) -> None:
    import time

    index = jobs_home() / "index"
    index.mkdir(parents=True, exist_ok=True)
    entry = {"target": target, "submitted_at": time.time()}
    if target == "resontech":
        entry["base_url"] = config.base_url
    (index / f"{job_id}.json").write_text(json.dumps(entry), encoding="utf-8")


def _recall(job_id: str) -> dict[str, Any]:
    path = jobs_home() / "index" / f"{job_id}.json"
    if not path.is_file():
        if (jobs_home() / "jobs" / job_id).is_dir():
            return {"target": "local"}
        raise JobNotFoundError(f"job {job_id!r} was not submitted from this machine: pass target= to attach it")
    return json.loads(path.read_text(encoding="utf-8"))
