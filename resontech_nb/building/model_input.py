"""What the default loop will feed the model, checked before a job is built: channels and image size.

The default loop converts every image to the channels the model expects (``--input-shape``, else the model's
first layer, else the images' own) and resizes it to ``img_size``. Here the model is built once in the kernel
and given one batch of that shape, so that a model built for 32 px run with ``img_size=224``, or a first layer
that takes a channel count the loop cannot make, fails before anything is submitted, naming the fix.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

from ..config.settings import TrainingConfig
from ..errors import CaptureWarning, JobBuildError
from ..jobcode import rt_dataset

if TYPE_CHECKING:  # pragma: no cover
    from ..capture import ModelSpec
    from ..data.shards import ShardSet

log = logging.getLogger(__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def default_loop_channels(spec: ModelSpec, training: TrainingConfig, shards: ShardSet, strict: bool = True) -> int:
    """The channel count the default loop will feed ``spec``'s model (0: the sites decide); raise JobBuildError
    when ``img_size`` or the channels cannot fit the model. A failed forward pass of a model checked without
    ``--input-shape`` is only a CaptureWarning unless ``strict`` (a job about to be submitted)."""
    size = training.img_size
    shape = spec.input_shape
    if shape is not None and len(shape) == 4:
        if tuple(shape[2:]) != (size, size):
            raise JobBuildError(
                f"{spec.class_name} was checked with --input-shape {','.join(map(str, shape))} but img_size={size}: "
                f"the default loop would feed it {size}x{size} images; set --img-size {shape[2]} "
                f"(or check the model with --input-shape {shape[0]},{shape[1]},{size},{size})"
            )
        _check_channels(spec.class_name, shape[1], shards, "--input-shape")
        return int(shape[1])
    if shape is not None:  # not an image batch: the user declared another input; preflight ran it
        log.warning(
            "%s was checked with --input-shape %s, not (N, C, H, W): the default loop feeds it image batches "
            "(N, C, %d, %d); write your own fl_train_model if it takes something else",
            spec.class_name,
            ",".join(map(str, shape)),
            size,
            size,
        )
        return 0
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            model = spec.load_class()()
    except Exception as exc:  # noqa: BLE001 - preflight already built it in a clean process; nothing to add here
        log.debug("not checking the default loop's input: %s", _one_line(exc))
        return 0
    first = rt_dataset.model_channels(model)
    channels = first or shards.image_channels or 3
    _check_channels(spec.class_name, channels, shards, "its first layer" if first else "the images")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, channels, size, size))
    except Exception as exc:  # noqa: BLE001 - the user's forward
        message = (
            f"{spec.class_name} fails on the (2, {channels}, {size}, {size}) batches the default loop feeds it with "
            f"img_size={size} ({_one_line(exc)}): set --img-size to the size the model was built for, "
            f"or check it with %%fl_model --input-shape 1,{channels},H,W"
        )
        if strict:
            raise JobBuildError(message) from None
        warnings.warn(message + " (the job folder is written; submitting it fails here)", CaptureWarning, stacklevel=4)
    return 0


def _check_channels(class_name: str, channels: int, shards: ShardSet, source: str) -> None:
    if channels in rt_dataset.CHANNEL_MODES:
        return
    seen = shards.image_channels
    raise JobBuildError(
        f"{class_name} takes {channels} input channels ({source}) but the images have {seen or 'unknown'} and the "
        "default loop feeds 1 (grayscale), 3 (RGB) or 4 (RGBA): make the first layer take one of these, "
        "or write your own fl_train_model"
    )
