"""The default fl_train_model on real synthetic shards: it learns, reports real sample counts, loads the
incoming weights first, and turns the usual mistakes into messages that name the fix.

``rt_default_train`` is imported the way sites import it: as a top-level module from ``jobcode/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"
if str(JOBCODE) not in sys.path:
    sys.path.insert(0, str(JOBCODE))

import rt_default_train  # noqa: E402
import rt_manifest  # noqa: E402
import rt_zip  # noqa: E402

from resontech_nb.building.builder import JOBCODE_FILES  # noqa: E402
from resontech_nb.data.synthetic import make_synthetic_shards  # noqa: E402

NUM_CLASSES = 4
IMG = 16
TRAIN_ROWS = 48 - round(48 * 0.2)  # the default val_fraction holds out a fifth of an unmarked shard


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class WrongHeadNet(TinyNet):
    def __init__(self) -> None:
        super().__init__()
        self.head[-1] = nn.Linear(16, 10)


class TwoClassNet(TinyNet):
    def __init__(self) -> None:
        super().__init__()
        self.head[-1] = nn.Linear(16, 2)


class OutOfMemoryNet(TinyNet):
    """Fails the way a too-large batch fails on a GPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("train")
    single = make_synthetic_shards(base / "single", n_clients=1, samples_per_client=(48,), img_size=IMG, seed=1)
    multi = make_synthetic_shards(
        base / "multi", n_clients=1, samples_per_client=(48,), img_size=IMG, multi_label=True, seed=2
    )
    return {
        "single": rt_zip.safe_extract(single[0], base / "x-single"),
        "multi": rt_zip.safe_extract(multi[0], base / "x-multi"),
    }


def payload(data_path: Path, **hyperparams: object) -> dict:
    hp = {"num_classes": NUM_CLASSES, "local_epochs": 3, "batch_size": 8, "learning_rate": 0.01, "img_size": IMG}
    hp.update(hyperparams)
    return {
        "initial_weights": None,
        "data_path": str(data_path),
        "round": 0,
        "num_rounds": 1,
        "site_name": "site-1",
        "hyperparams": hp,
        "device": "cpu",
    }


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_default_training_lowers_the_loss(shards: dict[str, Path], kind: str) -> None:
    torch.manual_seed(0)
    result = rt_default_train.default_train_model(TinyNet, payload(shards[kind]))
    metrics = result["metrics"]
    assert result["samples"] == TRAIN_ROWS
    assert metrics["loss"] < metrics["first_epoch_loss"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    model = TinyNet()
    model.load_state_dict(result["weights"])  # strict: the weights fit the model class
    assert all(t.device.type == "cpu" for t in result["weights"].values())


def test_multi_label_is_inferred_when_not_given(shards: dict[str, Path]) -> None:
    torch.manual_seed(0)
    p = payload(shards["multi"], local_epochs=1)
    del p["hyperparams"]["num_classes"]  # 0 / missing: inferred from the shard
    result = rt_default_train.default_train_model(TinyNet, p)
    assert result["samples"] == TRAIN_ROWS and result["metrics"]["loss"] > 0


def test_initial_weights_are_loaded_before_training(shards: dict[str, Path]) -> None:
    torch.manual_seed(1)
    start = {k: v.clone() for k, v in TinyNet().state_dict().items()}
    p = payload(shards["single"], local_epochs=1, learning_rate=1e-9)
    p["initial_weights"] = {k: v.numpy() for k, v in start.items()}  # numpy arrays are accepted too
    torch.manual_seed(99)  # a fresh model would start elsewhere
    result = rt_default_train.default_train_model(TinyNet, p)
    for key, value in start.items():
        assert torch.allclose(result["weights"][key], value, atol=1e-6), key


def test_same_round_and_site_shuffle_the_same_way(shards: dict[str, Path]) -> None:
    torch.manual_seed(2)
    start = TinyNet().state_dict()
    runs = []
    for _ in range(2):
        p = payload(shards["single"], local_epochs=1)
        p["initial_weights"] = start
        runs.append(rt_default_train.default_train_model(TinyNet, p))
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert rt_default_train.shuffle_seed(0, "site-1") != rt_default_train.shuffle_seed(1, "site-1")


def test_empty_shard_says_it_has_no_samples(tmp_path: Path) -> None:
    (tmp_path / "manifest.ndjson").write_text("")
    with pytest.raises(rt_manifest.ManifestError, match="the shard of site-1 has no samples"):
        rt_default_train.default_train_model(TinyNet, payload(tmp_path))


def test_output_size_mismatch_names_num_classes(shards: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"returns shape \(8, 10\) but the data has num_classes=4"):
        rt_default_train.default_train_model(WrongHeadNet, payload(shards["single"], local_epochs=1))


def test_label_beyond_num_classes_is_refused(shards: dict[str, Path]) -> None:
    with pytest.raises(rt_manifest.ManifestError, match="out of range for num_classes=2"):
        rt_default_train.default_train_model(TinyNet, payload(shards["single"], num_classes=2))


def test_cuda_out_of_memory_says_lower_batch_size(shards: dict[str, Path]) -> None:
    with pytest.raises(RuntimeError) as info:
        rt_default_train.default_train_model(OutOfMemoryNet, payload(shards["single"], batch_size=64))
    assert str(info.value) == (
        "CUDA out of memory with batch_size=64: lower batch_size in TrainingConfig (e.g. %fl_submit --batch-size 32)"
    )


def test_jobcode_runs_without_resontech_nb_installed(shards: dict[str, Path], tmp_path: Path) -> None:
    """On a site only the job's custom/ folder is there: the modules must import nothing else of ours."""
    import shutil
    import subprocess

    custom = tmp_path / "custom"
    custom.mkdir()
    for name in JOBCODE_FILES:  # what the job builder ships
        shutil.copy(JOBCODE / name, custom / name)
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("resontech_nb", "torchvision"):
            raise ImportError(name + " is not installed on this site")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(custom)!r})
import torch, torch.nn as nn
from rt_default_train import default_train_model
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)
    def forward(self, x):
        return self.fc(x.flatten(1))
out = default_train_model(Net, {{"data_path": {str(shards["single"])!r}, "device": "cpu",
    "hyperparams": {{"img_size": 8, "local_epochs": 1, "batch_size": 16}}}})
print("samples", out["samples"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"samples {TRAIN_ROWS}" in done.stdout


# -- validation rows and the default evaluation -------------------------------------------------------


def rows(*splits: str) -> list[rt_manifest.Sample]:
    return [
        rt_manifest.Sample(id=f"s{i}", uri=f"file://{i}.png", y=(0,), meta={"split": split} if split else {})
        for i, split in enumerate(splits)
    ]


def test_rows_marked_val_validate_and_test_rows_are_left_out() -> None:
    train, val = rt_default_train.split_samples(rows("", "val", "train", "test", "Validation", ""), 0.5)
    assert [s.id for s in train] == ["s0", "s2", "s5"]
    assert [s.id for s in val] == ["s1", "s4"]


def test_unmarked_shard_holds_out_the_same_fraction_whatever_the_order() -> None:
    samples = rows(*[""] * 20)
    train, val = rt_default_train.split_samples(samples, 0.25)
    assert len(val) == 5 and len(train) == 15
    _, val_reversed = rt_default_train.split_samples(list(reversed(samples)), 0.25)
    assert {s.id for s in val} == {s.id for s in val_reversed}
    assert rt_default_train.split_samples(samples, 0.0) == (samples, [])
    assert rt_default_train.split_samples(rows(""), 0.5) == (rows(""), [])  # one row: it trains


def test_default_evaluation_scores_the_given_weights_on_the_held_out_rows(shards: dict[str, Path]) -> None:
    torch.manual_seed(0)
    start = TinyNet().state_dict()
    p = payload(shards["single"], local_epochs=4)
    p["initial_weights"] = start
    trained = rt_default_train.default_train_model(TinyNet, p)

    def evaluate(weights: dict) -> dict:
        q = payload(shards["single"])
        del q["initial_weights"]
        q["weights"] = weights
        return rt_default_train.default_evaluate_model(TinyNet, q)

    before, after = evaluate(start), evaluate(trained["weights"])
    assert before["samples"] == after["samples"] == 48 - TRAIN_ROWS
    assert set(after["metrics"]) == {"loss", "accuracy"}
    assert after["metrics"]["loss"] < before["metrics"]["loss"]
    assert after["metrics"]["accuracy"] >= before["metrics"]["accuracy"]
    assert evaluate(trained["weights"]) == after  # evaluation is deterministic


def test_no_validation_rows_means_no_validation(shards: dict[str, Path]) -> None:
    q = payload(shards["single"], val_fraction=0.0)
    q["weights"] = TinyNet().state_dict()
    assert rt_default_train.default_evaluate_model(TinyNet, q) is None


def test_the_finite_check_tells_an_overflowing_sum_from_nan_and_inf() -> None:
    import rt_checks

    reference = {"w": ((3,), torch.float32)}
    big = torch.full((3,), 3e38)  # every value finite, their sum overflows to inf
    assert not torch.isfinite(big.sum()) and rt_checks.update_problem({"w": big}, reference) == ""
    for values, named in (([1.0, float("nan"), 2.0], "NaN"), ([float("inf"), float("-inf"), 0.0], "inf")):
        problem = rt_checks.update_problem({"w": torch.tensor(values)}, reference)
        assert problem.startswith(f"weights['w'] holds {named}"), problem
    half = {"w": ((2,), torch.float16)}
    assert rt_checks.update_problem({"w": torch.tensor([60000.0, 60000.0], dtype=torch.float16)}, half) == ""


# ---- the learning rate over the job and the label-skew correction ----


def test_cosine_falls_from_the_rate_to_a_tenth_over_the_whole_job() -> None:
    lr, rounds, epochs, steps = 0.01, 5, 2, 7
    curve = [
        rt_default_train.learning_rates(lr, "cosine", r, rounds, epochs, steps)(s)
        for r in range(rounds)
        for s in range(epochs * steps)
    ]
    assert curve[0] == pytest.approx(lr)
    assert curve[-1] == pytest.approx(lr * rt_default_train.LR_FLOOR)
    assert all(a >= b for a, b in zip(curve[:-1], curve[1:], strict=True))
    # a site with other batch counts is at the same point of the curve when a round starts
    other = rt_default_train.learning_rates(lr, "cosine", 2, rounds, epochs, 40)(0)
    assert other == pytest.approx(curve[2 * epochs * steps], rel=0.02)
    assert rt_default_train.learning_rates(lr, "constant", 3, rounds, epochs, steps)(5) == lr


def test_an_unknown_schedule_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="constant, cosine"):
        rt_default_train.learning_rates(0.01, "step", 0, 5, 2, 7)


def test_the_notebook_side_knows_the_loops_schedules() -> None:
    from resontech_nb.config.settings import LR_SCHEDULES

    assert LR_SCHEDULES == rt_default_train.LR_SCHEDULES


def _mean_step(shard: Path, **hp: object) -> float:
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in TinyNet().state_dict().items()}
    out = rt_default_train.default_train_model(
        TinyNet, {**payload(shard, local_epochs=1, **hp), "round": 4, "num_rounds": 5, "initial_weights": start}
    )
    moved = [(out["weights"][k] - start[k]).abs().mean() for k in start if start[k].is_floating_point()]
    return float(torch.stack(moved).mean())


def test_the_last_round_of_a_cosine_job_takes_small_steps(shards: dict[str, Path]) -> None:
    constant = _mean_step(shards["single"], lr_schedule="constant")
    cosine = _mean_step(shards["single"], lr_schedule="cosine")
    # Adam's steps are about the learning rate, which cosine has brought down to a tenth or so by round 5 of 5
    assert cosine < constant * 0.3


def test_balance_labels_stops_a_skewed_site_favouring_its_own_classes(tmp_path: Path) -> None:
    import numpy as np

    from resontech_nb.data.splitting import split_shards

    rng = np.random.default_rng(0)
    labels = np.array([0] * 90 + [1] * 10)  # a site with nine in ten rows of class 0
    images = rng.integers(0, 256, (100, IMG, IMG, 3), dtype=np.uint8)  # nothing to learn but the prior
    [shard] = split_shards((images, labels), 1, seed=0, out=tmp_path / "skewed")
    data = rt_zip.safe_extract(shard, tmp_path / "x")

    def share_of_class_0(balance: bool) -> float:
        torch.manual_seed(0)
        out = rt_default_train.default_train_model(
            TwoClassNet, payload(data, num_classes=2, local_epochs=5, balance_labels=balance)
        )
        model = TwoClassNet()
        model.load_state_dict(out["weights"])
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
            return float(model(x).softmax(1)[:, 0].mean())

    assert share_of_class_0(False) > 0.75  # the plain loss learns the site's prior
    assert share_of_class_0(True) < 0.65  # the corrected one does not reward it
