"""The default loop feeds a model the channels it expects, and a model that cannot take what the loop feeds it
fails before anything is built: the image size against --input-shape or a forward pass, a channel count the
loop cannot make. ``rt_default_train`` is imported the way sites import it: as a top-level module."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"
if str(JOBCODE) not in sys.path:
    sys.path.insert(0, str(JOBCODE))

import rt_default_train  # noqa: E402
import rt_zip  # noqa: E402

from resontech_nb import TrainingConfig, build_job, capture, make_shard, submit, validate_shards  # noqa: E402
from resontech_nb.errors import CaptureWarning, DataWarning, JobBuildError  # noqa: E402

SIZE = 8


class GrayNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


class ColourNet(GrayNet):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)


class TwoChannelNet(GrayNet):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)


def _shard(folder: Path, mode: str, count: int = 12, sizes: tuple[int, ...] = (SIZE,)) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    pairs = []
    for index in range(count):
        size = sizes[index % len(sizes)]
        shape = (size, size) if mode == "L" else (size, size, 3)
        path = folder / f"img-{index}.png"
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(path)
        pairs.append((path, index % 3))
    return make_shard(pairs, folder.parent / f"{folder.name}.zip")


@pytest.fixture(scope="module")
def gray(tmp_path_factory) -> Path:
    return _shard(tmp_path_factory.mktemp("gray") / "gray", "L")


@pytest.fixture(scope="module")
def colour(tmp_path_factory) -> Path:
    return _shard(tmp_path_factory.mktemp("colour") / "colour", "RGB")


def _payload(shard: Path, dest: Path, **hp: object) -> dict:
    data = rt_zip.safe_extract(shard, dest)
    hyperparams = {"num_classes": 3, "local_epochs": 1, "batch_size": 4, "img_size": SIZE, **hp}
    return {"data_path": str(data), "round": 0, "site_name": "site-1", "hyperparams": hyperparams, "device": "cpu"}


@pytest.mark.parametrize("model_cls", [GrayNet, ColourNet])
@pytest.mark.parametrize("which", ["gray", "colour"])
def test_the_default_loop_feeds_the_channels_of_the_first_layer(model_cls, which, request, tmp_path):
    shard = request.getfixturevalue(which)
    result = rt_default_train.default_train_model(model_cls, _payload(shard, tmp_path / "x"))
    assert result["samples"] > 0 and np.isfinite(result["metrics"]["loss"])
    evaluated = rt_default_train.default_evaluate_model(model_cls, {**_payload(shard, tmp_path / "x"),
                                                                   "weights": result["weights"]})
    assert evaluated is not None and evaluated["samples"] > 0


def test_without_a_first_layer_the_images_decide_and_in_channels_overrides(gray, tmp_path):
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(SIZE * SIZE, 3)  # takes 1 x 8 x 8: only grayscale fits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.flatten(1))

    assert rt_default_train.default_train_model(Flat, _payload(gray, tmp_path / "x"))["samples"] > 0
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # in_channels=3 forces RGB
        rt_default_train.default_train_model(Flat, _payload(gray, tmp_path / "x", in_channels=3))


def test_a_model_checked_for_32_px_run_with_the_default_img_size_fails_before_the_build(gray, tmp_path):
    spec = capture(GrayNet, input_shape=(1, 1, SIZE, SIZE))
    with pytest.raises(JobBuildError, match=f"set --img-size {SIZE}"):
        build_job(spec, gray, TrainingConfig(), out=tmp_path / "job")  # img_size 224
    job = build_job(spec, gray, TrainingConfig(img_size=SIZE), out=tmp_path / "ok")
    assert (job / "app" / "config" / "config_fed_client.json").read_text().count('"in_channels": 1') == 1


def test_without_input_shape_one_forward_pass_at_img_size_checks_the_model(colour, tmp_path, clean_env):
    spec = capture(GrayNet)
    message = r"fails on the \(2, 1, 224, 224\) batches .* set --img-size"
    with pytest.raises(JobBuildError, match=message):
        submit(spec, colour, TrainingConfig(), {"min_clients": 1})  # fails before anything starts
    jobs = Path(os.environ["RESONTECH_NB_HOME"]) / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    with pytest.warns(CaptureWarning, match=message):  # only a folder: a warning
        build_job(spec, colour, TrainingConfig(), out=tmp_path / "job")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_job(spec, colour, TrainingConfig(img_size=SIZE), out=tmp_path / "ok")  # RGB images, 1 channel


def test_a_channel_count_the_loop_cannot_make_names_the_fix(colour, tmp_path):
    with pytest.raises(JobBuildError, match="takes 2 input channels .* feeds 1 \\(grayscale\\), 3 \\(RGB\\) or 4"):
        build_job(capture(TwoChannelNet), colour, TrainingConfig(img_size=SIZE), out=tmp_path / "job")


def test_images_of_mixed_sizes_or_modes_are_a_clear_warning(tmp_path, gray):
    mixed = _shard(tmp_path / "mixed", "RGB", sizes=(SIZE, 12))
    with pytest.warns(DataWarning, match="2 different sizes \\(8x8, 12x12\\)"):
        validate_shards(mixed)
    with pytest.warns(DataWarning, match="mix modes L, RGB"):
        validate_shards([gray, mixed])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_shards(gray).image_channels == 1
