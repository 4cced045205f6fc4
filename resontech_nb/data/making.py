"""Building shards: a shard ZIP from (image, labels) pairs or from a folder of class subfolders.

The ZIP's bytes depend only on its content (fixed timestamps and modes), so re-making the same shard
gives the same S3 key on re-submit. Each shard is read back with the sites' own manifest reader before
it replaces the output file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..jobcode import rt_manifest
from .shards import shard_error

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # same content -> same bytes -> unchanged S3 key on re-submit


def _labels(value: Any, image: Path) -> list[int]:
    labels = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(labels, (list, tuple))
        or not labels
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in labels)
    ):
        raise ManifestError(
            f"labels of {image} must be a class index >= 0 or a non-empty list of them, got {value!r}"
        )
    return sorted(set(int(v) for v in labels))


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def make_shard(
    pairs: Iterable[tuple[str | Path, int | Sequence[int]] | tuple[str | Path, int | Sequence[int], dict]],
    out_zip: str | Path,
    *,
    root: str | Path | None = None,
    manifest_file: str = rt_manifest.MANIFEST_FILE,
) -> Path:
    """Write a shard ZIP from ``(image path, labels)`` pairs (optionally a third item: a ``meta`` dict).

    Images go under ``images/`` with ``file://images/...`` URIs. With ``root``, relative image paths
    are taken from ``root`` and keep their sub-path (``images/<path under root>``), which is also the
    sample id; otherwise images are numbered. The ZIP's bytes depend only on its content.
    """
    out_zip = Path(out_zip)
    root_path = Path(root) if root is not None else None
    entries: list[tuple[str, Path, list[int], dict]] = []
    used: set[str] = set()
    for index, item in enumerate(pairs):
        if len(item) not in (2, 3):
            raise ManifestError(f"item {index} of pairs must be (image path, labels) or (path, labels, meta)")
        image = Path(item[0])
        if root_path is not None and not image.is_absolute():
            image = root_path / image
        if not image.is_file():
            raise ManifestError(f"image {image} does not exist: check the path")
        labels = _labels(item[1], image)
        meta = dict(item[2]) if len(item) == 3 and item[2] else {}
        rel = None
        if root_path is not None:
            try:
                rel = image.resolve().relative_to(root_path.resolve()).as_posix()
            except ValueError:
                rel = None
        if rel is None:
            rel = f"{index:06d}-{image.name}"
        sample_id = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
        if sample_id in used:
            sample_id = f"{sample_id}#{index}"
        used.add(sample_id)
        entries.append((f"images/{rel}", image, labels, {"id": sample_id, **({"meta": meta} if meta else {})}))
    if not entries:
        raise ManifestError(f"no images given for {out_zip.name}: a shard needs at least one sample")

    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_zip.name}-", suffix=".tmp", dir=out_zip.parent)
    os.close(fd)
    try:
        lines = []
        with zipfile.ZipFile(tmp_name, "w") as archive:
            for name, image, labels, extra in entries:
                suffix = image.suffix.lower()
                _write_entry(archive, name, image.read_bytes(), compress=suffix not in IMAGE_EXTENSIONS)
                record = {"id": extra["id"], "uri": "file://" + urllib.parse.quote(name), "y": labels}
                if "meta" in extra:
                    record["meta"] = extra["meta"]
                lines.append(json.dumps(record, sort_keys=False))
            _write_entry(archive, manifest_file, ("\n".join(lines) + "\n").encode("utf-8"), compress=True)
        rt_manifest.read_manifest(tmp_name, manifest_file)
        os.replace(tmp_name, out_zip)
    except rt_manifest.ManifestError as exc:
        raise shard_error(out_zip, exc) from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    log.info("wrote shard %s with %d samples", out_zip, len(entries))
    return out_zip


def make_shard_from_folder(folder: str | Path, out_zip: str | Path) -> tuple[Path, list[str]]:
    """Shard a folder with one subfolder of images per class (class index = sorted subfolder order).

    Returns ``(zip path, class names)``; images are found recursively inside each class folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder: pass a folder with one subfolder of images per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ManifestError(
            f"{folder} has no class subfolders: put each class's images in its own subfolder "
            "(e.g. cats/, dogs/)"
        )
    pairs: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        images = sorted(
            p for p in (folder / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        pairs.extend((image, index) for image in images)
    if not pairs:
        raise ManifestError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in the class subfolders of {folder}"
        )
    return make_shard(pairs, out_zip, root=folder), classes
