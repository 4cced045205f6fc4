"""The NVFlare configuration files of a job: ``meta.json``, ``config_fed_server.json``, ``config_fed_client.json``.

The server runs NVFlare's ScatterAndGather (``rt_workflow``: min_clients counts good answers) with
FedAvg weighted by the sample counts the sites return, the persistor, the round recorder and a guard
filter on results; with an evaluation function, NVFlare's global-model or cross-site evaluation after
the last round. The clients run the executor for ``train``, ``validate`` and ``submit_model``.

The algorithm (``resontech_nb/algorithms/``) chooses plain NVFlare parts: the workflow, the shareable
generator, the kind of update the aggregator expects, components of its own and the executor's arguments; the
privacy setting adds NVFlare's filters to the sites' train results.
"""

from __future__ import annotations

from typing import Any

from .. import privacy
from ..algorithms import algorithm_for
from ..config.settings import FederationConfig

APP = "app"
AGGREGATOR = "rt_aggregator.RTWeightedAggregator"  # NVFlare's InTimeAccumulateWeightedAggregator, summing in place
RAW_WEIGHTS = {"id": "raw_weights", "path": "rt_arrays.RawWeightsFormat", "args": {}}  # on every side: see rt_arrays
GLOBAL_MODEL_EVAL = "rt_workflow.RTGlobalModelEval"  # NVFlare's GlobalModelEval, its model sent raw
CROSS_SITE_EVAL = "rt_workflow.RTCrossSiteModelEval"  # NVFlare's CrossSiteModelEval, each model sent raw


def meta(federation: FederationConfig) -> dict[str, Any]:
    return {
        "name": federation.job_name,
        "resource_spec": {},
        "min_clients": federation.min_clients,
        "deploy_map": {APP: ["@ALL"]},
    }


def server_config(
    federation: FederationConfig, persistor_path: str, persistor_args: dict, evaluates: bool, model_class: str
) -> dict[str, Any]:
    recorder_args = {
        "min_clients": federation.min_clients,
        "train_timeout": federation.train_timeout,
        "select_metric": federation.select_metric,
        "higher_is_better": federation.select_higher,
        "cross_site_eval": federation.cross_site_eval,
    }
    algorithm = algorithm_for(federation)
    expected_kind = algorithm.expected_kind("WEIGHT_DIFF" if sends_difference(federation) else "WEIGHTS")
    components = [
        RAW_WEIGHTS,
        {"id": "persistor", "path": persistor_path, "args": persistor_args},
        algorithm.shareable_generator(),
        # Weighted by each result's NUM_STEPS_CURRENT_ROUND, i.e. the sample count fl_train_model returned.
        {"id": "aggregator", "path": AGGREGATOR, "args": {"expected_data_kind": expected_kind}},
        {"id": "rt_recorder", "path": "rt_recorder.RoundRecorder", "args": recorder_args},
        *algorithm.server_components(model_class),
    ]
    workflows = [
        {
            "id": "scatter_and_gather",
            "path": algorithm.workflow(),
            "args": {
                "min_clients": federation.min_clients,
                "num_rounds": federation.num_rounds,
                "start_round": 0,
                "wait_time_after_min_received": federation.wait_time_after_min_received,
                "aggregator_id": "aggregator",
                "persistor_id": "persistor",
                "shareable_generator_id": "shareable_generator",
                "train_task_name": "train",
                "train_timeout": federation.train_timeout,
                "task_check_period": federation.task_check_period,
                "memory_gc_rounds": federation.memory_gc_rounds,
            },
        }
    ]
    if evaluates:  # the final global model (and with cross_site_eval each site's) is evaluated on every site
        components.append({"id": "model_locator", "path": "rt_locator.RTModelLocator", "args": {}})
        args: dict[str, Any] = {
            "model_locator_id": "model_locator",
            "validation_timeout": federation.train_timeout,
            "task_check_period": federation.task_check_period,
        }
        if federation.cross_site_eval:
            args["submit_model_timeout"] = federation.train_timeout
        workflows.append(
            {
                "id": "cross_site_eval" if federation.cross_site_eval else "global_model_eval",
                "path": CROSS_SITE_EVAL if federation.cross_site_eval else GLOBAL_MODEL_EVAL,
                "args": args,
            }
        )
    return {
        "format_version": 2,
        **transfer_settings(federation),
        "server": {
            "heart_beat_timeout": federation.heart_beat_timeout,
            "task_request_interval": federation.task_request_interval,
        },
        "task_data_filters": [],
        # A site's update that does not fit the global model (keys, shapes, NaN) never reaches the aggregator.
        "task_result_filters": [
            {
                "tasks": ["train"],
                "filters": [
                    {"path": "rt_guard.UpdateGuard", "args": {"withheld": privacy.withheld_pattern(federation.privacy)}}
                ],
            }
        ],
        "components": components,
        "workflows": workflows,
    }


def transfer_settings(federation: FederationConfig) -> dict[str, int]:
    """NVFlare's size of one piece of a numpy or tensor download (read from the app's config on each side)."""
    chunk = int(federation.download_chunk_mb * 1024 * 1024)
    return {"np_download_chunk_size": chunk, "tensor_download_chunk_size": chunk}


def sends_difference(federation: FederationConfig) -> bool:
    """Whether sites send ``local - global`` (WEIGHT_DIFF) rather than their whole model.

    Algorithms that work on the update do, and so do the privacy filters (percentile and SVT act on its values;
    a withheld tensor must leave the global one as it was). Plain FedAvg sends whole models.
    """
    return algorithm_for(federation).works_on_update or bool(federation.privacy)


def algorithm_args(federation: FederationConfig) -> dict[str, Any]:
    """The built-in executor's arguments for the algorithm."""
    return {**algorithm_for(federation).executor_args(), "send_difference": sends_difference(federation)}


def client_config(federation: FederationConfig, executor_path: str, executor_args: dict) -> dict[str, Any]:
    return {
        "format_version": 2,
        **transfer_settings(federation),
        "executors": [
            {"tasks": ["train", "validate", "submit_model"], "executor": {"path": executor_path, "args": executor_args}}
        ],
        "task_result_filters": privacy.client_filters(federation.privacy),
        "task_data_filters": [],
        "components": [RAW_WEIGHTS],
    }
