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
from torch.utils.data import Dataset, default_collate

if __package__:  # the notebook side: resontech_nb.jobcode.rt_dataset
    from .rt_https import fetch_https
    from .rt_sample import ManifestError, Sample
    from .rt_samplecache import SampleStore
else:  # a job's custom/ folder, where every rt_* module is top-level
    from rt_https import fetch_https
    from rt_sample import ManifestError, Sample
    from rt_samplecache import SampleStore


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

    With a ``store`` (``rt_samplecache``) each image is decoded and resized once: the uint8 pixels are kept and
    every later epoch only converts them. The DataLoader fetches whole batches (``__getitems__``, with
    ``collate``), which gives the same tensors as fetching one sample at a time.
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
        store: SampleStore | None = None,
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
        self.store = store
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

    def decode(self, path: Path) -> np.ndarray:
        """The image at ``path`` in this data set's channels and size: uint8, channels x height x width."""
        with Image.open(path) as img:
            img = img.convert(CHANNEL_MODES[self.channels])
            if img.size != (self.img_size, self.img_size):
                img = img.resize((self.img_size, self.img_size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        if array.ndim == 2:
            return array[None].copy()
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def load_image(self, path: Path) -> torch.Tensor:
        """The image at ``path`` as a normalized CHW float tensor."""
        return to_tensors(self.decode(path)[None])[0]

    def pixels(self, sample: Sample) -> np.ndarray:
        """The sample's decoded uint8 pixels: from the store when it has them, else decoded (and kept there)."""
        if self.store is not None:
            kept = self.store.get(sample.uri)
            if kept is not None:
                return kept
        try:
            array = self.decode(self.image_path(sample))
        except (OSError, ValueError) as exc:
            raise ManifestError(
                f"cannot read image {sample.uri} (sample {sample.id!r}): {exc}; replace it with a PNG or JPEG file"
            ) from None
        if self.store is not None:
            self.store.put(sample.uri, array)
        return array

    def target(self, sample: Sample) -> torch.Tensor:
        if self.multi_label:
            vec = torch.zeros(self.num_classes, dtype=torch.float32)
            vec[list(sample.y)] = 1.0
            return vec
        return torch.tensor(sample.y[0], dtype=torch.long)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        return to_tensors(self.pixels(sample)[None])[0], self.target(sample)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """A whole batch at once (the DataLoader's batched fetch): images stacked, then converted in one go."""
        samples = [self.samples[i] for i in indices]
        images = to_tensors(np.stack([self.pixels(s) for s in samples]))
        return Batch((images, torch.stack([self.target(s) for s in samples])))


class Batch(tuple):
    """(images, targets) already collated by ``ManifestDataset.__getitems__``."""


def collate(batch: Batch | list) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's collate_fn for a ``ManifestDataset``: a ``Batch`` as it is, a list of pairs stacked."""
    if isinstance(batch, Batch):
        return batch
    return default_collate(batch)


def to_tensors(pixels: np.ndarray) -> torch.Tensor:
    """uint8 N x C x H x W pixels to float N x C x H x W in [-1, 1]: (x / 255 - 0.5) / 0.5."""
    if not (pixels.flags.writeable and pixels.flags.c_contiguous):  # a kept sample: torch wants its own
        pixels = np.array(pixels)
    return torch.from_numpy(pixels).to(torch.float32).div_(127.5).sub_(1.0)
