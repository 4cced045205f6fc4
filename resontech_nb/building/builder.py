"""Build a real NVFlare job folder from a captured model.

Layout (NVFlare's job format, the shape of the scatter-and-gather tutorial)::

    <job>/meta.json
    <job>/app/config/config_fed_server.json   ScatterAndGather + weighted FedAvg + persistor + recorder
    <job>/app/config/config_fed_client.json   RTTrainExecutor (or the user's Executor) for task "train"
    <job>/app/custom/model_def.py             the captured model class and fl_train_model
    <job>/app/custom/rt_*.py                  the job-side code from resontech_nb/jobcode/

Nothing in the folder imports resontech_nb, so it runs unchanged in the simulator, in POC
mode and on a production deployment (whose sites need bring-your-own-code rights).
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import privacy
from ..algorithms import DEFAULT as DEFAULT_ALGORITHM
from ..algorithms import algorithm_for
from ..config.settings import FederationConfig, TrainingConfig, as_config
from ..errors import AlgorithmWarning, JobBuildError
from ..job.handle import jobs_home
from ..jobcode import JOBCODE_DIR
from . import nvflare_config
from .custom_classes import accepted_args, ship_component
from .model_input import default_loop_channels
from .nvflare_config import APP

if TYPE_CHECKING:  # pragma: no cover
    from ..capture import ModelSpec
    from ..data.shards import ShardSet

log = logging.getLogger(__name__)

JOBCODE_FILES = (
    "rt_executor.py",
    "rt_checks.py",
    "rt_persistor.py",
    "rt_files.py",
    "rt_recorder.py",
    "rt_workflow.py",
    "rt_evaluation.py",
    "rt_guard.py",
    "rt_locator.py",
    "rt_manifest.py",
    "rt_sample.py",
    "rt_zip.py",
    "rt_https.py",
    "rt_dataset.py",
    "rt_samplecache.py",
    "rt_default_train.py",
    "rt_algorithms.py",
    "rt_tensors.py",
    "rt_arrays.py",
    "rt_pieces.py",
    "rt_shm.py",
    "rt_wire.py",
    "rt_fedopt.py",
    "rt_aggregator.py",
)
INITIAL_WEIGHTS_FILE = "initial_weights.pt"
EVALUATE_FN = "fl_evaluate_model"


def build_job(
    spec: ModelSpec,
    shards: ShardSet,
    training: TrainingConfig | None = None,
    federation: FederationConfig | None = None,
    out: str | Path | None = None,
    executor: type | None = None,
    persistor: type | None = None,
    initial_weights: Mapping[str, Any] | None = None,
    *,
    submitting: bool = False,
) -> Path:
    """Write the job folder for ``spec`` trained on ``shards`` (a validated ``ShardSet``); return its path.

    ``initial_weights`` (a state_dict) is where round 0 starts; it is checked against the model and
    shipped inside the job. ``submitting``: a default-loop model that fails its forward pass at ``img_size``
    is an error (else a warning: the folder may be meant for something else).
    """
    training = as_config(TrainingConfig, training)
    federation = as_config(FederationConfig, federation)
    if federation.min_clients > len(shards.shards):
        raise JobBuildError(
            f"min_clients={federation.min_clients} but only {len(shards.shards)} shard(s) were given: "
            f"lower --min-clients or add shards"
        )
    try:
        compile(spec.source, "model_def.py", "exec")
    except SyntaxError as exc:
        raise JobBuildError(
            f"model_def.py does not compile (line {exc.lineno}: {exc.msg}): re-run the %%fl_model cell"
        ) from None
    evaluates = defines_name(spec.source, EVALUATE_FN)
    if federation.cross_site_eval and not evaluates:
        raise JobBuildError(
            "cross_site_eval needs fl_evaluate_model: define def fl_evaluate_model(payload) in the %%fl_model cell "
            "(or use the default training loop, which has one)"
        )
    if federation.select_metric and not evaluates:
        raise JobBuildError(
            f"select_metric={federation.select_metric!r} needs validation: define def fl_evaluate_model(payload) "
            "in the %%fl_model cell, or leave select_metric empty"
        )
    _check_algorithm(spec, federation, executor)
    checked_weights = None if initial_weights is None else initial_weights_for(spec, initial_weights)
    in_channels = 0 if spec.has_train_fn else default_loop_channels(spec, training, shards, strict=submitting)

    job_dir = _prepare_out(out, federation.job_name)
    custom = job_dir / APP / "custom"
    config_dir = job_dir / APP / "config"
    custom.mkdir(parents=True)
    config_dir.mkdir(parents=True)

    (custom / "model_def.py").write_text(spec.source, encoding="utf-8")
    for name in JOBCODE_FILES:
        shutil.copyfile(JOBCODE_DIR / name, custom / name)

    hyperparams = training.to_dict()
    hyperparams["num_classes"] = training.num_classes or shards.num_classes
    hyperparams["multi_label"] = bool(shards.multi_label)
    hyperparams["in_channels"] = in_channels  # 0: the default loop asks the model's first layer, then the images
    standard_args = {"model_module": "model_def", "model_class": spec.class_name}

    executor_path, executor_args = (
        "rt_executor.RTTrainExecutor",
        {
            **standard_args,
            "shards": {site: str(Path(p).resolve()) for site, p in shards.shards.items()},
            "hyperparams": hyperparams,
            **nvflare_config.algorithm_args(federation),
            "keep_local_model": federation.cross_site_eval,
        },
    )
    if executor is not None:
        executor_path = ship_component(executor, "nvflare.apis.executor.Executor", custom)
        executor_args = accepted_args(executor, executor_args)
    persistor_path, persistor_args = "rt_persistor.RTModelPersistor", {**standard_args, "seed": training.seed}
    if checked_weights is not None:
        import torch

        torch.save(checked_weights, custom / INITIAL_WEIGHTS_FILE)
        persistor_args["initial_weights"] = INITIAL_WEIGHTS_FILE
    if persistor is not None:
        persistor_path = ship_component(
            persistor, "nvflare.app_common.abstract.model_persistor.ModelPersistor", custom
        )
        persistor_args = accepted_args(persistor, persistor_args)

    _write_json(job_dir / "meta.json", nvflare_config.meta(federation))
    server = nvflare_config.server_config(federation, persistor_path, persistor_args, evaluates, spec.class_name)
    _write_json(config_dir / "config_fed_server.json", server)
    _write_json(
        config_dir / "config_fed_client.json", nvflare_config.client_config(federation, executor_path, executor_args)
    )
    log.info("built NVFlare job %s at %s", federation.job_name, job_dir)
    return job_dir


def set_shards(job_dir: str | Path, shards: dict[str, str | Path]) -> None:
    """Point each site of a built job at its shard on this machine (used where the job runs)."""
    path = Path(job_dir) / APP / "config" / "config_fed_client.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for entry in config["executors"]:
        args = entry["executor"].setdefault("args", {})
        if "shards" in args or entry["executor"]["path"] == "rt_executor.RTTrainExecutor":
            args["shards"] = {site: str(Path(p).resolve()) for site, p in shards.items()}
    _write_json(path, config)


def read_job_info(job_dir: str | Path) -> dict[str, Any]:
    """Name, rounds, min_clients and sites of a built job, read back from its configs."""
    job_dir = Path(job_dir)
    meta = json.loads((job_dir / "meta.json").read_text(encoding="utf-8"))
    server = json.loads((job_dir / APP / "config" / "config_fed_server.json").read_text(encoding="utf-8"))
    client = json.loads((job_dir / APP / "config" / "config_fed_client.json").read_text(encoding="utf-8"))
    # a training job's rounds; a statistics job (building/statistics_job.py) has one task on every site, no rounds
    workflow = next((w["args"] for w in server["workflows"] if w["id"] == "scatter_and_gather"), None)
    shards = client["executors"][0]["executor"].get("args", {}).get("shards", {})
    return {
        "name": meta["name"],
        "num_rounds": workflow["num_rounds"] if workflow else 1,
        "min_clients": workflow["min_clients"] if workflow else meta.get("min_clients", len(shards)),
        "sites": list(shards),
    }


# -- helpers -----------------------------------------------------------------------


def defines_name(source: str, name: str) -> bool:
    """Whether ``source`` binds ``name`` at module level (def, assignment or import)."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def _check_algorithm(spec: ModelSpec, federation: FederationConfig, executor: type | None) -> None:
    """Refuse what the algorithm and privacy settings cannot do with this job; warn when a loop ignores them."""
    if executor is not None and (federation.algorithm != DEFAULT_ALGORITHM or federation.privacy):
        raise JobBuildError(
            f"algorithm={federation.algorithm!r} and privacy={federation.privacy!r} need the built-in executor, "
            "which sends what they use: drop executor= (put your training in fl_train_model) or use fedavg "
            "without privacy filters"
        )
    if privacy.withheld_pattern(federation.privacy):
        try:
            keys = list(spec.load_class()().state_dict())
        except Exception as exc:
            raise JobBuildError(
                f"cannot build {spec.class_name} to check privacy={federation.privacy!r}: {exc}"
            ) from None
        problem = privacy.withheld_keys_problem(federation.privacy, keys)
        if problem:
            raise JobBuildError(problem)
    unread = algorithm_for(federation).unread_payload_warning(spec.source)
    if unread:
        warnings.warn(unread, AlgorithmWarning, stacklevel=3)


def initial_weights_for(spec: ModelSpec, weights: Mapping[str, Any]) -> dict[str, Any]:
    """``weights`` as the model's own dtypes, after checking keys and shapes against the model."""
    import torch

    from ..jobcode import rt_checks

    if not isinstance(weights, Mapping) or not weights:
        raise JobBuildError(
            f"initial_weights must be a state_dict (a dict of tensors), got {type(weights).__name__}: "
            "pass model.state_dict()"
        )
    try:
        state = spec.load_class()().state_dict()
    except Exception as exc:
        raise JobBuildError(f"cannot build {spec.class_name} to check initial_weights: {exc}") from None
    problem = rt_checks.update_problem(weights, rt_checks.reference_of(state, with_dtypes=False), who="initial_weights")
    if problem:
        problem = problem.replace("weights", "initial_weights", 1)
        raise JobBuildError(f"initial_weights do not fit {spec.class_name}: {problem}")
    return {k: torch.as_tensor(weights[k]).detach().to("cpu", state[k].dtype).clone() for k in state}


def _prepare_out(out: str | Path | None, job_name: str) -> Path:
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = jobs_home() / "builds" / f"{job_name}-{stamp}-{time.time_ns() % 1_000_000:06d}"
    job_dir = Path(out).expanduser().resolve()
    if job_dir.exists():
        if not job_dir.is_dir():
            raise JobBuildError(f"{job_dir} is a file: give --build-only a folder path")
        if any(job_dir.iterdir()):
            if not (job_dir / "meta.json").exists():
                raise JobBuildError(f"{job_dir} is not empty and holds no earlier job: choose an empty folder")
            shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    return job_dir


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
