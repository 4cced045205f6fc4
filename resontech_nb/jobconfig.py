"""The NVFlare configuration files of a job: ``meta.json``, ``config_fed_server.json``, ``config_fed_client.json``.

The server runs NVFlare's ScatterAndGather (``rt_workflow``: min_clients counts good answers) with
FedAvg weighted by the sample counts the sites return, the persistor, the round recorder and a guard
filter on results; with an evaluation function, NVFlare's global-model or cross-site evaluation after
the last round. The clients run the executor for ``train``, ``validate`` and ``submit_model``.
"""

from __future__ import annotations

from typing import Any

from .config import FederationConfig

APP = "app"
SAG = "rt_workflow.RTScatterAndGather"  # NVFlare's ScatterAndGather; min_clients counts good answers
AGGREGATOR = "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
SHAREABLE_GENERATOR = (
    "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
)
GLOBAL_MODEL_EVAL = "nvflare.app_common.workflows.global_model_eval.GlobalModelEval"
CROSS_SITE_EVAL = "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval"


def meta(federation: FederationConfig) -> dict[str, Any]:
    return {
        "name": federation.job_name,
        "resource_spec": {},
        "min_clients": federation.min_clients,
        "deploy_map": {APP: ["@ALL"]},
    }


def server_config(
    federation: FederationConfig, persistor_path: str, persistor_args: dict, evaluates: bool
) -> dict[str, Any]:
    recorder_args = {
        "min_clients": federation.min_clients,
        "train_timeout": federation.train_timeout,
        "select_metric": federation.select_metric,
        "higher_is_better": federation.select_higher,
        "cross_site_eval": federation.cross_site_eval,
    }
    components = [
        {"id": "persistor", "path": persistor_path, "args": persistor_args},
        {"id": "shareable_generator", "path": SHAREABLE_GENERATOR, "args": {}},
        # Weighted by each result's NUM_STEPS_CURRENT_ROUND, i.e. the sample count fl_train_model returned.
        {"id": "aggregator", "path": AGGREGATOR, "args": {"expected_data_kind": "WEIGHTS"}},
        {"id": "rt_recorder", "path": "rt_recorder.RoundRecorder", "args": recorder_args},
    ]
    workflows = [
        {
            "id": "scatter_and_gather",
            "path": SAG,
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
        "server": {
            "heart_beat_timeout": federation.heart_beat_timeout,
            "task_request_interval": federation.task_request_interval,
        },
        "task_data_filters": [],
        # A site's update that does not fit the global model (keys, shapes, NaN) never reaches the aggregator.
        "task_result_filters": [{"tasks": ["train"], "filters": [{"path": "rt_guard.UpdateGuard", "args": {}}]}],
        "components": components,
        "workflows": workflows,
    }


def client_config(executor_path: str, executor_args: dict) -> dict[str, Any]:
    return {
        "format_version": 2,
        "executors": [
            {"tasks": ["train", "validate", "submit_model"], "executor": {"path": executor_path, "args": executor_args}}
        ],
        "task_result_filters": [],
        "task_data_filters": [],
        "components": [],
    }
