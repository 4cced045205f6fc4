"""What a job's tracking runs must hold, read back with TensorBoard's and MLflow's own readers and compared with
``job.rounds`` (shared by the tracking tests of every target)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest


def expected_points(job: Any) -> dict[str, dict[int, float]]:
    """What the run must hold, from job.rounds: ``{key: {step: value}}``."""
    out: dict[str, dict[int, float]] = {}
    for record in job.rounds:
        out.setdefault("global/loss", {})[record.round] = record.global_loss
        for key, value in record.validation.items():
            out.setdefault(f"global/val/{key}", {})[record.round] = value
        out.setdefault("round/participants", {})[record.round] = float(len(record.participants))
        for site, client in record.clients.items():
            for key, value in client.metrics.items():
                out.setdefault(f"site/{site}/train/{key}", {})[record.round] = value
            for key, value in client.validation.items():
                out.setdefault(f"site/{site}/val/{key}", {})[record.round] = value
            for name, value, step in client.steps:
                out.setdefault(f"site/{site}/log/{name}", {})[step] = value
    return out


def tensorboard_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of a run folder (all its event files), read with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        assert len({e.step for e in events}) == len(events), f"{tag} has a step twice"
        out[tag] = {e.step: e.value for e in events}
    return out


def mlflow_run(uri: str, job: Any, experiment: str) -> tuple[Any, Any]:
    """The job's one run in ``experiment`` (found by its job id tag) and the client that read it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} at {uri}"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.resontech_job_id = '{job.id}'")
    assert len(runs) == 1, runs
    return client, runs[0]


def assert_tensorboard_matches(run_dir: Path, job: Any) -> dict[str, dict[int, float]]:
    scalars = tensorboard_scalars(run_dir)
    expected = expected_points(job)
    for key, by_step in expected.items():
        assert scalars.get(key) == pytest.approx(by_step), key
    return scalars


def assert_mlflow_matches(client: Any, run: Any, job: Any, status: str = "FINISHED") -> None:
    for key, by_step in expected_points(job).items():
        history = client.get_metric_history(run.info.run_id, key)
        assert {m.step: m.value for m in history} == pytest.approx(by_step), key
        assert len(history) == len(by_step), f"{key} logged twice"
    assert run.data.tags["status"] == status
    assert run.info.status == status


def stop_after_first_logged_round(job: Any, timeout: float = 300) -> str:
    """Let the job's tracker log at least one round, then stop it as a kernel going away would; the job's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(
        any(key == "global/loss" for key, _ in state.written) for state in job.tracking.states
    ):
        assert job.status not in ("FAILED", "ABORTED"), job.error
        time.sleep(0.3)
    job.tracking.stop()
    assert job.tracking.wait(timeout=60)
    assert not job.done, "the job ended before the tracker was stopped: make its rounds slower"
    return job.id
