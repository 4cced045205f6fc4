"""``split_shards``: simulate a federation from one data set held in one place, a shard ZIP per site.

The source is a folder with one subfolder of images per class, a list of ``(image path, labels)`` pairs, or a
pair of arrays ``(images, labels)``. The rows are dealt into sites by a partitioner (``partitioners/``: iid,
dirichlet, pathological); each site's rows are then marked ``train`` or ``val`` (``meta.split``). The same
source, arguments and seed write the same ZIP bytes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataWarning, ManifestError
from .making import IMAGE_EXTENSIONS, make_shard
from .partitioners import REGISTRY

log = logging.getLogger(__name__)

Row = tuple[Path, list[int]]


def _labels_of(value: Any, where: str) -> list[int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        labels = [int(value)]
    else:
        labels = [int(v) for v in np.asarray(value).ravel().tolist()]
    if not labels or any(v < 0 for v in labels):
        raise ManifestError(f"labels of {where} must be a class index >= 0 or a non-empty list of them, got {value!r}")
    return sorted(set(labels))


def _from_folder(folder: Path) -> list[Row]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ManifestError(f"{folder} has no class subfolders: put each class's images in its own subfolder")
    rows = []
    for index, name in enumerate(classes):
        for image in sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
            rows.append((image, [index]))
    return rows


def _array_labels(labels: Any, count: int) -> list[list[int]]:
    if isinstance(labels, np.ndarray) and labels.ndim == 2:  # multi-hot
        return [_labels_of(np.flatnonzero(row), f"row {i}") for i, row in enumerate(labels)]
    if len(labels) != count:
        raise ManifestError(f"{count} images but {len(labels)} labels: give one label (or list of labels) per image")
    return [_labels_of(value, f"row {i}") for i, value in enumerate(labels)]


def _write_arrays(images: np.ndarray, folder: Path) -> list[Path]:
    """Each image as a PNG: uint8 as it is, other arrays scaled from [0, their maximum] to [0, 255]."""
    from PIL import Image

    array = np.asarray(images)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise ManifestError(
            f"images must be an array of shape (N, H, W) or (N, H, W, C) with C 1, 3 or 4, got {array.shape}"
        )
    if array.dtype != np.uint8:
        top = float(array.max()) or 1.0
        array = (array.astype(np.float64) / top * 255).round().clip(0, 255).astype(np.uint8)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    paths = []
    for index, image in enumerate(array):
        path = folder / f"row-{index:06d}.png"
        Image.fromarray(image).save(path, format="PNG")
        paths.append(path)
    return paths


def _rows(source: Any, scratch: Path) -> tuple[list[Row], Path | None]:
    """(rows, the folder ids are taken relative to) of any source."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ManifestError(f"{folder} is not a folder: pass a folder with one subfolder of images per class")
        return _from_folder(folder), folder
    if isinstance(source, tuple) and len(source) == 2 and hasattr(source[0], "shape"):
        images, labels = source
        label_rows = _array_labels(labels, len(images))
        if len(label_rows) != len(images):
            raise ManifestError(f"{len(images)} images but {len(label_rows)} label rows: give one per image")
        return list(zip(_write_arrays(images, scratch), label_rows, strict=True)), scratch
    if isinstance(source, Sequence):
        rows = []
        for index, item in enumerate(source):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ManifestError(f"item {index} of the source must be (image path, labels), got {item!r}")
            rows.append((Path(item[0]), _labels_of(item[1], str(item[0]))))
        return rows, None
    raise ManifestError(
        f"cannot split a {type(source).__name__}: pass a folder of class subfolders, a list of (image path, labels) "
        "pairs, or (images array, labels array)"
    )


def _mark(rows: np.ndarray, val_fraction: float, rng: np.random.Generator, site: str) -> dict[int, str]:
    """Each row of a site as ``train`` or ``val``: a ``val_fraction`` of them (at least one when a site has two)."""
    count = 0
    if val_fraction > 0 and len(rows) >= 2:
        count = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
    elif val_fraction > 0:
        warnings.warn(
            f"{site} has {len(rows)} row(s) and no validation rows: it trains but reports no validation; "
            "use fewer sites or more data",
            DataWarning,
            stacklevel=3,
        )
    held_out = set(rng.choice(rows, size=count, replace=False).tolist()) if count else set()
    return {int(r): ("val" if int(r) in held_out else "train") for r in rows}


def split_shards(
    source: Any,
    n_sites: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    classes_per_site: int = 2,
    val_fraction: float = 0.15,
    seed: int = 0,
    out: str | Path = "shards",
) -> list[Path]:
    """Deal one data set into ``n_sites`` shards ``out/site-1.zip`` ...; return their paths.

    ``source``: a folder with one subfolder of images per class (class index = sorted subfolder order), a list
    of ``(image path, labels)`` pairs, or ``(images, labels)`` arrays (images (N, H, W) or (N, H, W, C); labels
    (N,) class indices, lists of them, or an (N, K) multi-hot array). ``scheme``: ``iid`` (shuffled, equal
    sizes), ``dirichlet`` (each class shared in Dir(``alpha``) proportions) or ``pathological``
    (``classes_per_site`` classes per site); multi-label rows go by their rarest label. A ``val_fraction`` of
    each site's rows is marked ``meta.split = "val"``. Every site gets at least one row (a ``DataWarning``
    says when rows had to be moved). Deterministic under ``seed``; other ``site-*.zip`` files in ``out`` are
    removed, so that the folder holds exactly this split.
    """
    if scheme not in REGISTRY:
        raise ConfigError(f"scheme {scheme!r} is unknown; use one of: {', '.join(REGISTRY)}")
    if not isinstance(n_sites, int) or n_sites < 1:
        raise ConfigError(f"n_sites must be a whole number >= 1, got {n_sites!r}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be at least 0 and below 1 (e.g. 0.15), got {val_fraction}")
    partitioner = REGISTRY[scheme](n_sites, alpha=alpha, classes_per_site=classes_per_site)
    out_dir = Path(out)
    with tempfile.TemporaryDirectory(prefix="rt_split_") as tmp:
        rows, root = _rows(source, Path(tmp))
        if len(rows) < n_sites:
            raise ConfigError(
                f"a split into {n_sites} sites needs at least {n_sites} rows, the data has {len(rows)}: "
                "use fewer sites"
            )
        rng = np.random.default_rng(seed)
        parts = partitioner.split([labels for _, labels in rows], rng)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for site, part in enumerate(parts, start=1):
            split = _mark(part, val_fraction, rng, f"site-{site}")
            pairs = [(rows[r][0], rows[r][1], {"split": split[int(r)]}) for r in part]
            paths.append(make_shard(pairs, out_dir / f"site-{site}.zip", root=root))
    written = {p.resolve() for p in paths}
    for stale in sorted(out_dir.glob("site-*.zip")):
        if stale.resolve() not in written:
            stale.unlink()
            log.info("removed %s, left from an earlier split", stale)
    sizes = ", ".join(str(len(part)) for part in parts)
    log.info("split %d rows %s into %d sites (%s rows) in %s", len(rows), scheme, n_sites, sizes, out_dir)
    return paths
