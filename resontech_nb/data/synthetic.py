"""A small synthetic image data set, written as real PNG files in real shard ZIPs.

Each class is a coloured shape (its own hue and its own kind of shape) on a noisy background, so a
tiny CNN learns it in a few rounds on a laptop CPU. Multi-label images overlay the shapes of
several classes. The output depends only on the arguments (same seed, same bytes).
"""

from __future__ import annotations

import colorsys
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError
from .making import make_shard

log = logging.getLogger(__name__)

_SHAPES = ("disk", "square", "hstripes", "vstripes", "cross", "triangle")


def default_sample_counts(n_clients: int) -> tuple[int, ...]:
    """Unequal client sizes: 40, 60, 80, 40, 60, 80, ..."""
    return tuple(40 + 20 * (i % 3) for i in range(n_clients))


def class_colour(label: int, num_classes: int) -> tuple[int, int, int]:
    """A saturated colour per class, hues spread evenly around the wheel."""
    red, green, blue = colorsys.hsv_to_rgb(label / max(num_classes, 1), 0.9, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def _draw_class(draw: ImageDraw.ImageDraw, label: int, num_classes: int, size: int, rng: np.random.Generator) -> None:
    colour = class_colour(label, num_classes)
    shape = _SHAPES[label % len(_SHAPES)]
    extent = int(size * rng.uniform(0.35, 0.6))
    x0 = int(rng.integers(0, size - extent + 1))
    y0 = int(rng.integers(0, size - extent + 1))
    x1, y1 = x0 + extent - 1, y0 + extent - 1
    step = max(2, extent // 4)
    if shape == "disk":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "hstripes":
        for y in range(y0, y1 + 1, step):
            draw.rectangle((x0, y, x1, min(y + step // 2, y1)), fill=colour)
    elif shape == "vstripes":
        for x in range(x0, x1 + 1, step):
            draw.rectangle((x, y0, min(x + step // 2, x1), y1), fill=colour)
    elif shape == "cross":
        width = max(1, extent // 5)
        mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
        draw.rectangle((mid_x - width, y0, mid_x + width, y1), fill=colour)
        draw.rectangle((x0, mid_y - width, x1, mid_y + width), fill=colour)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=colour)


def synthetic_image(labels: Sequence[int], num_classes: int, img_size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image showing the pattern of every label in ``labels`` over grey noise."""
    background = rng.normal(110, 25, size=(img_size, img_size, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    for label in labels:
        _draw_class(draw, int(label), num_classes, img_size, rng)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(img_size, img_size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def _client_labels(
    count: int, num_classes: int, multi_label: bool, rng: np.random.Generator, classes: Sequence[int]
) -> list[list[int]]:
    if not multi_label:
        labels = [classes[i % len(classes)] for i in range(count)]  # balanced, then shuffled
        rng.shuffle(labels)
        return [[label] for label in labels]
    out = []
    for _ in range(count):
        k = int(rng.integers(1, min(3, num_classes) + 1))
        out.append(sorted(int(v) for v in rng.choice(num_classes, size=k, replace=False)))
    return out


def make_synthetic_shards(
    out_dir: str | Path,
    n_clients: int = 3,
    samples_per_client: Sequence[int] | None = None,
    num_classes: int = 4,
    img_size: int = 32,
    multi_label: bool = False,
    seed: int = 0,
    classes_per_client: int = 0,
) -> list[Path]:
    """Write ``site-1.zip`` ... ``site-N.zip`` into ``out_dir`` and return their paths.

    ``samples_per_client`` defaults to unequal sizes (40, 60, 80, ...), so FedAvg's weighting by
    sample count matters. Every single-label shard holds every class, unless ``classes_per_client`` is
    set: then site k holds only that many classes, starting at class (k - 1) x that number (wrapping
    around), the label-skewed split on which FedProx and SCAFFOLD are compared with FedAvg.
    """
    counts = tuple(samples_per_client) if samples_per_client is not None else default_sample_counts(n_clients)
    if n_clients < 1:
        raise ConfigError(f"n_clients must be >= 1, got {n_clients}")
    if len(counts) != n_clients:
        raise ConfigError(
            f"samples_per_client has {len(counts)} entries for n_clients={n_clients}: give one per client"
        )
    if any(c < 1 for c in counts):
        raise ConfigError(f"every client needs at least one sample, got samples_per_client={list(counts)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 for a classifier, got {num_classes}")
    if img_size < 8:
        raise ConfigError(f"img_size must be >= 8 to draw the patterns, got {img_size}")
    if not 0 <= classes_per_client <= num_classes or (classes_per_client and multi_label):
        raise ConfigError(
            f"classes_per_client must be between 0 (every class) and num_classes={num_classes}, for single-label "
            f"shards only; got {classes_per_client}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    with tempfile.TemporaryDirectory(prefix="rt_synth_") as scratch:
        for client, count in enumerate(counts, start=1):
            folder = Path(scratch) / f"site-{client}"
            folder.mkdir()
            pairs = []
            k = classes_per_client
            classes = [((client - 1) * k + j) % num_classes for j in range(k)] if k else list(range(num_classes))
            for index, labels in enumerate(_client_labels(count, num_classes, multi_label, rng, classes)):
                path = folder / f"img-{index:05d}.png"
                synthetic_image(labels, num_classes, img_size, rng).save(path, format="PNG")
                pairs.append((path, labels))
            paths.append(make_shard(pairs, out / f"site-{client}.zip", root=folder))
    log.info("wrote %d synthetic shards into %s", len(paths), out)
    return paths
