"""Evaluation with NVFlare really running: every metric, validation of each global model, the best
model, cross-site evaluation and the user's own starting weights, with numbers the arithmetic gives.

The deterministic model (fl_models.DeltaNet): site-k adds k to every weight and reports 10/20/50
training samples, so each round moves the global model by 2.5 (the sample-weighted mean of 1, 2, 3).
``delta_evaluate`` scores a model by its mean weight, with 1/2/7 evaluation samples per site.
"""

from __future__ import annotations

import fl_models
import pytest
import torch

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.errors import JobBuildError, JobNotFoundError

pytestmark = pytest.mark.slow

FAST = {"wait_time_after_min_received": 0}


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=3, img_size=16, seed=1)


def zeros() -> dict[str, torch.Tensor]:
    return {k: torch.zeros_like(v) for k, v in fl_models.DeltaNet().state_dict().items()}


def test_metrics_validation_best_model_and_initial_weights_are_exact(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.metric_train, eval_fn=fl_models.delta_evaluate)
    job = submit(
        spec,
        three_shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=3, min_clients=3, select_metric="dist_loss", job_name="eval", **FAST),
        initial_weights=zeros(),
    )
    assert job.wait(timeout=300) == "FINISHED", job.error

    # Training metrics: every scalar, sample-weighted over the sites (10, 20, 50 samples).
    first = job.rounds[0]
    assert first.metrics["loss"] == pytest.approx(200 / 80)
    assert first.metrics["accuracy"] == pytest.approx(20 / 80)
    assert "note" not in first.metrics
    assert first.clients["site-3"].metrics["accuracy"] == pytest.approx(0.3)

    # Validation of each round's global model (from zeros: mean weight 2.5, 5.0, 7.5), the last one included.
    for record, mean_w in zip(job.rounds, (2.5, 5.0, 7.5), strict=True):
        assert record.validation["mean_w"] == pytest.approx(mean_w)
        # score = k * mean_w, weighted by 1, 2, 7 evaluation samples: 2.6 * mean_w
        assert record.validation["score"] == pytest.approx(2.6 * mean_w)
        assert record.clients["site-2"].validation["score"] == pytest.approx(2 * mean_w)
        assert record.clients["site-3"].validation_samples == 7

    # The best model by dist_loss (|mean_w - 5|, lower is better) is round 2's, i.e. index 1.
    assert job.best_round == 1
    best, final = job.result(which="best"), job.result()
    assert torch.equal(best["w"], torch.full((2, 3), 5.0)) and torch.equal(best["b"], torch.full((3,), 5.0))
    assert torch.equal(final["w"], torch.full((2, 3), 7.5))
    rows = job.history()
    assert len(rows) == 9 and {"train_accuracy", "val_score", "global_val_mean_w"} <= set(rows[0])


def test_cross_site_matrix_and_failed_validation(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train, eval_fn=fl_models.flaky_evaluate)
    job = submit(
        spec,
        three_shards,
        training=TrainingConfig(img_size=16),
        federation=FederationConfig(
            num_rounds=2, min_clients=3, cross_site_eval=True, select_metric="accuracy", job_name="xsite", **FAST
        ),
    )
    assert job.wait(timeout=300) == "FINISHED", job.error

    # site-2 could not validate round 1's global model: marked on that site, training went on.
    first = job.rounds[0]
    assert "validation data of site-2 is locked" in first.clients["site-2"].validation_error
    assert first.clients["site-2"].took_part
    assert first.validation["mean_w"] == pytest.approx(2.5 + 2.5)  # sites 1 and 3 still validated it

    # Cross-site: the final global model and each site's last local model, on every site's data.
    matrix = job.cross_site
    assert set(matrix) == {"global", "site-1", "site-2", "site-3"}
    assert all(set(row) == {"site-1", "site-2", "site-3"} for row in matrix.values())
    global_mean = 2.5 + 2 * 2.5  # DeltaNet's weights start at mean 2.5
    assert matrix["global"]["site-1"]["mean_w"] == pytest.approx(global_mean)
    # site-k's last local model is round 1's global model plus k
    assert matrix["site-3"]["site-1"]["mean_w"] == pytest.approx(2.5 + 2.5 + 3)
    assert matrix["site-3"]["site-2"]["score"] == pytest.approx(2 * (2.5 + 2.5 + 3))

    # select_metric that no site reports: the job keeps its final model and says which metrics exist.
    assert job.best_round is None
    with pytest.raises(JobNotFoundError, match=r"'accuracy' was reported by no site.*dist_loss, mean_w, score"):
        job.result(which="best")
    assert any("'accuracy' was reported by no site" in note for note in job.notes)
    assert torch.equal(job.result()["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3) + 5.0)


def test_default_loop_reports_validation_that_improves(tmp_path):
    shards = make_synthetic_shards(
        tmp_path / "shards", n_clients=2, samples_per_client=(40, 40), img_size=16, num_classes=8
    )
    torch.manual_seed(0)  # the same starting model every run, so the curve is the same every run
    start = fl_models.SmallConvNet8().state_dict()
    job = submit(
        capture(fl_models.SmallConvNet8),
        shards,
        training=TrainingConfig(img_size=16, local_epochs=2, batch_size=8, learning_rate=0.005),
        federation=FederationConfig(num_rounds=4, min_clients=2, select_metric="accuracy", job_name="dflt", **FAST),
        initial_weights=start,
    )
    assert job.wait(timeout=400) == "FINISHED", job.error
    accuracy = [r.validation["accuracy"] for r in job.rounds]
    losses = [r.validation["loss"] for r in job.rounds]
    assert len(accuracy) == 4 and all(0.0 <= a <= 1.0 for a in accuracy)
    assert accuracy[-1] > accuracy[0] and losses[-1] < losses[0], (accuracy, losses)
    assert all(r.clients["site-1"].validation_samples == 8 for r in job.rounds)  # a fifth of 40 held out
    assert job.rounds[0].clients["site-1"].samples == 32
    best = max(range(4), key=lambda i: (accuracy[i], -i))
    assert job.best_round == best
    assert job.result(which="best").keys() == job.result().keys()


def test_initial_weights_that_do_not_fit_are_refused_before_anything_is_built(three_shards, tmp_path):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    bad = zeros()
    bad["b"] = torch.zeros(4)
    with pytest.raises(JobBuildError, match=r"initial_weights\['b'\] has shape \(4,\), the model's is \(3,\)"):
        submit(spec, three_shards, training=TrainingConfig(img_size=16), initial_weights=bad)
    missing = zeros()
    del missing["w"]
    with pytest.raises(JobBuildError, match=r"initial_weights lacks 'w'"):
        submit(spec, three_shards, training=TrainingConfig(img_size=16), initial_weights=missing)


def test_model_selection_and_cross_site_need_an_evaluation_function(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    for federation in (FederationConfig(cross_site_eval=True), FederationConfig(select_metric="accuracy")):
        with pytest.raises(JobBuildError, match="define def fl_evaluate_model"):
            submit(spec, three_shards, training=TrainingConfig(img_size=16), federation=federation)
