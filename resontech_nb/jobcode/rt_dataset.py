"""The torch data set of a shard: ``ManifestDataset`` turns manifest samples into image tensors and targets.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_dataset``; the notebook side imports it as ``resontech_nb.jobcode.rt_dataset``. It needs only
the standard library, numpy, torch and Pillow, and it never imports resontech_nb.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

if __package__:  # the notebook side: resontech_nb.jobcode.rt_dataset
    from .rt_https import fetch_https
    from .rt_sample import ManifestError, Sample
else:  # a job's custom/ folder, where every rt_* module is top-level
    from rt_https import fetch_https
    from rt_sample import ManifestError, Sample


# The channel counts the default loop can feed a model, and the Pillow mode that gives each.
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;1"})


def image_channels(mode: str) -> int:
    """How many channels an image of Pillow ``mode`` has for the default loop: 1 (grayscale), 3 or 4 (alpha)."""
    if mode in _GRAY_MODES:
        return 1
    return 4 if mode in ("RGBA", "PA") else 3


def model_channels(model: torch.nn.Module) -> int | None:
    """The input channels of the model's first layer that declares them (a convolution's ``in_channels``)."""
    for module in model.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int) and channels > 0:
            return channels
    return None


class ManifestDataset(Dataset):
    """Images of a shard (extracted into ``root_dir``) as ``(CHW float tensor, target)`` pairs.

    Images are converted to ``channels`` channels (1: grayscale, 3: RGB, 4: RGBA; grayscale to RGB repeats the
    grey, RGB to grayscale takes the luminance), resized to ``img_size`` x ``img_size``, scaled to [0, 1] and
    normalized with mean 0.5 / std 0.5 on every channel, so [-1, 1] whatever the channel count. The target is
    the class index (long) for single-label data and a multi-hot float vector of length ``num_classes`` for
    multi-label data.
    """

    def __init__(
        self,
        root_dir: str | Path,
        samples: Sequence[Sample],
        num_classes: int,
        img_size: int,
        multi_label: bool,
        cache_dir: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        channels: int = 3,
    ) -> None:
        if channels not in CHANNEL_MODES:
            raise ManifestError(
                f"the default loop feeds 1 (grayscale), 3 (RGB) or 4 (RGBA) channels, not {channels}: make the model's "
                "first layer take one of these, or write your own fl_train_model"
            )
        self.channels = int(channels)
        self.root_dir = Path(root_dir)
        self.samples = list(samples)
        self.num_classes = int(num_classes)
        self.img_size = int(img_size)
        self.multi_label = bool(multi_label)
        self.cache_dir = Path(cache_dir) if cache_dir else self.root_dir / ".rt_cache"
        self.ssl_context = ssl_context
        for sample in self.samples:
            if self.num_classes > 0 and any(label >= self.num_classes for label in sample.y):
                raise ManifestError(
                    f"label {max(sample.y)} of sample {sample.id!r} is out of range for num_classes="
                    f"{self.num_classes}: raise num_classes or set it to 0 to infer it"
                )
        if not self.multi_label:
            bad = next((s for s in self.samples if len(s.y) != 1), None)
            if bad is not None:
                raise ManifestError(
                    f"sample {bad.id!r} has {len(bad.y)} labels but the data set is single-label: "
                    "set multi_label=True"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, sample: Sample) -> Path:
        if sample.is_remote:
            return fetch_https(sample.uri, self.cache_dir, ssl_context=self.ssl_context)
        return self.root_dir / sample.relative_path

    def load_image(self, path: Path) -> torch.Tensor:
        with Image.open(path) as img:
            img = img.convert(CHANNEL_MODES[self.channels])
            if img.size != (self.img_size, self.img_size):
                img = img.resize((self.img_size, self.img_size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array.transpose(2, 0, 1).copy())
        return tensor.div_(127.5).sub_(1.0)  # (x / 255 - 0.5) / 0.5

    def target(self, sample: Sample) -> torch.Tensor:
        if self.multi_label:
            vec = torch.zeros(self.num_classes, dtype=torch.float32)
            vec[list(sample.y)] = 1.0
            return vec
        return torch.tensor(sample.y[0], dtype=torch.long)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        path = self.image_path(sample)
        try:
            image = self.load_image(path)
        except (OSError, ValueError) as exc:
            raise ManifestError(
                f"cannot read image {sample.uri} (sample {sample.id!r}): {exc}; replace it with a PNG or JPEG file"
            ) from None
        return image, self.target(sample)
