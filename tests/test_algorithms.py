"""FedOpt, FedProx, SCAFFOLD and the privacy filters with NVFlare really running, against the arithmetic.

The deterministic model (fl_models.DeltaNet, 9 weights): site-k adds k to every weight and reports 10/20/50
samples, so FedAvg moves every weight by 2.5 a round. The default loop's runs use the synthetic shards.
"""

from __future__ import annotations

import json

import fl_models
import pytest
import torch
from fl_models import expected_after

from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
from resontech_nb.errors import AlgorithmWarning

pytestmark = pytest.mark.slow

FAST = {"wait_time_after_min_received": 0}


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory):
    return make_synthetic_shards(tmp_path_factory.mktemp("shards"), n_clients=3, img_size=16, seed=1)


def run(spec, shards, rounds=3, min_clients=3, initial_weights=None, training=None, **federation):
    job = submit(
        spec,
        shards,
        training=training or TrainingConfig(img_size=16),
        federation=FederationConfig(num_rounds=rounds, min_clients=min_clients, **FAST, **federation),
        initial_weights=initial_weights,
    )
    assert job.wait(timeout=300) == "FINISHED", job.error
    return job


def shifted(by: float) -> dict[str, torch.Tensor]:
    return {k: v.double() + by for k, v in fl_models.DeltaNet().state_dict().items()}


def assert_weights(result, expected, atol=1e-5):
    for name, value in expected.items():
        assert torch.allclose(result[name].double(), value, atol=atol), (name, result[name], value)


def test_fedopt_sgd_at_rate_one_is_fedavg_and_momentum_follows_the_arithmetic(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    plain = run(spec, three_shards, algorithm="fedopt", fedopt_lr=1.0, fedopt_momentum=0.0, job_name="fedopt")
    assert_weights(plain.result(), expected_after(3, fl_models.SAMPLES))

    # SGD with momentum 0.5 on the gradient -2.5 of every round: steps 2.5, 3.75, 4.375.
    momentum = run(spec, three_shards, algorithm="fedopt", fedopt_lr=1.0, fedopt_momentum=0.5, job_name="fedoptm")
    assert_weights(momentum.result(), shifted(2.5 + 3.75 + 4.375))
    # The records are those of any job: the sites' own metrics, weighted.
    assert momentum.rounds[-1].metrics["loss"] == pytest.approx((10 * 1 + 20 * 2 + 50 * 3) / 80)


def test_fedprox_gives_its_term_to_a_custom_loop(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.fedprox_train)
    job = run(spec, three_shards, rounds=2, algorithm="fedprox", fedprox_mu=0.1, job_name="fedprox")
    for site, k in (("site-1", 1), ("site-2", 2), ("site-3", 3)):
        metrics = job.rounds[1].clients[site].metrics
        assert metrics["prox"] == pytest.approx(0.1 / 2 * 9 * k**2)  # mu / 2 x 9 weights x k^2
        assert metrics["mu"] == pytest.approx(0.1)
    # FedProx changes what the sites minimise, not how the server averages.
    assert_weights(job.result(), expected_after(2, fl_models.SAMPLES))


def test_scaffold_corrects_each_sites_drift_as_the_arithmetic_says(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.scaffold_train)
    job = run(spec, three_shards, algorithm="scaffold", job_name="scaffold")
    shift, moves = fl_models.expected_scaffold(3, fl_models.SAMPLES)
    assert_weights(job.result(), shifted(shift))
    for record, moved in zip(job.rounds, moves, strict=True):
        for site, value in moved.items():
            assert record.clients[site].metrics["moved"] == pytest.approx(value)
    # From round 2 on, the control variates make every site move by the global step (2.5), not by its own k.
    assert {round(v, 6) for v in moves[1].values()} == {2.5}


def test_a_scaffold_job_whose_loop_never_corrects_fails_naming_the_call(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    with pytest.warns(AlgorithmWarning, match=r"never reads payload\['scaffold'\], so every site's round will fail"):
        job = submit(
            spec,
            three_shards,
            training=TrainingConfig(img_size=16),
            federation=FederationConfig(num_rounds=1, min_clients=3, algorithm="scaffold", **FAST),
        )
    assert job.wait(timeout=300) == "FAILED"
    errors = {c.error for c in job.rounds[0].clients.values()} - {None}  # the job may stop before all answer
    assert len(errors) == 1
    assert "payload['scaffold'].correct(model, lr)" in errors.pop()


def test_exclude_keeps_a_layer_from_the_server(three_shards):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    job = run(spec, three_shards, privacy="exclude:^b$", job_name="exclude")
    result, start = job.result(), fl_models.DeltaNet().state_dict()
    assert torch.equal(result["b"], start["b"])  # no site's b reached the server: it is where it started
    assert_weights({"w": result["w"]}, {"w": expected_after(3, fl_models.SAMPLES)["w"]})
    server_log = "\n".join(p.read_text() for p in job.workspace.glob("server/**/log.txt"))
    for site in ("site-1", "site-2", "site-3"):
        assert f"{site} sent 1 of 2 tensors; withheld by its privacy filter: b" in server_log
    client = json.loads(next(job.workspace.glob("**/app_site-1/config/config_fed_client.json")).read_text())
    paths = [f["path"] for entry in client["task_result_filters"] for f in entry["filters"]]
    assert paths == ["nvflare.app_common.filters.exclude_vars.ExcludeVars"]


def test_percentile_privacy_sends_clipped_updates(three_shards):
    # Each site's update is k at every weight; per sample k/n (0.1, 0.1, 0.06) is clipped to gamma=0.01,
    # then scaled back by n: 0.1, 0.2 and 0.5, whose weighted mean moves the model 0.375 a round.
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    job = run(spec, three_shards, rounds=2, privacy="percentile:percentile=10,gamma=0.01", job_name="percentile")
    assert_weights(job.result(), shifted(2 * 0.375))


def test_default_loop_fedprox_at_mu_zero_is_fedavg_and_a_large_mu_stays_near(tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(40, 60), img_size=16)
    torch.manual_seed(0)
    start = fl_models.SmallConvNet().state_dict()
    spec = capture(fl_models.SmallConvNet)
    training = TrainingConfig(img_size=16, local_epochs=2, learning_rate=0.01)
    fedavg = run(spec, shards, rounds=2, min_clients=2, initial_weights=start, training=training, job_name="avg")
    prox0 = run(
        spec, shards, rounds=2, min_clients=2, initial_weights=start, training=training,
        algorithm="fedprox", fedprox_mu=0.0, job_name="prox0",
    )
    assert_weights(prox0.result(), {k: v.double() for k, v in fedavg.result().items()}, atol=1e-6)

    # One site, one round: the global model is that site's local model.
    one = shards[:1]
    def drift(job):
        return sum(float((job.result()[k] - start[k]).pow(2).sum()) for k in start) ** 0.5

    near = run(
        spec, one, rounds=1, min_clients=1, initial_weights=start, training=training,
        algorithm="fedprox", fedprox_mu=10.0, job_name="prox10",
    )
    free = run(spec, one, rounds=1, min_clients=1, initial_weights=start, training=training, job_name="free")
    assert drift(near) < 0.7 * drift(free), (drift(near), drift(free))
