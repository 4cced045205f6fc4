"""Notebook-side shard validation: every shard is checked before anything is built, uploaded or submitted.
(Shards are built from image files in shard_making.py.)

Validation reuses ``jobcode/rt_manifest.py`` (and ``rt_https.py`` for https URIs), the same code that
reads the manifests on the sites, so a shard that passes here reads the same way there.
"""

from __future__ import annotations

import logging
import os
import posixpath
import ssl
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.settings import TrainingConfig, as_config
from ..errors import DataWarning, ManifestError
from ..jobcode import rt_dataset, rt_https, rt_manifest

log = logging.getLogger(__name__)


@dataclass
class ShardSet:
    """Validated shards, one site per ZIP: ``shards`` maps ``site-1``, ``site-2``, ... to the ZIP path."""

    shards: dict[str, Path]
    samples: dict[str, int]
    num_classes: int
    multi_label: bool
    remote_uris: int = 0
    label_counts: dict[str, dict[int, int]] = field(default_factory=dict, repr=False)
    image_modes: dict[str, int] = field(default_factory=dict, repr=False)  # Pillow mode -> images (file:// only)
    image_sizes: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)  # (width, height) -> images

    @property
    def image_channels(self) -> int:
        """The channels of the images: 1 when all are grayscale, 4 when any has alpha, else 3; 0 when unknown."""
        if not self.image_modes:
            return 0
        return max(rt_dataset.image_channels(mode) for mode in self.image_modes)

    @property
    def total_samples(self) -> int:
        return sum(self.samples.values())

    def describe(self) -> str:
        """One line per site, for display in a notebook."""
        kind = "multi-label" if self.multi_label else "single-label"
        lines = [f"{len(self.shards)} shard(s), {self.total_samples} samples, {self.num_classes} classes, {kind}"]
        for site, path in self.shards.items():
            lines.append(f"  {site}: {path.name} ({self.samples[site]} samples)")
        return "\n".join(lines)


def shard_error(shard: Path, exc: Exception) -> ManifestError:
    """``exc`` as a ManifestError whose message starts with the shard's file name."""
    message = str(exc)
    if not message.startswith(shard.name):
        message = f"{shard.name}: {message}"
    return ManifestError(message)


def _list_shards(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        path = Path(paths).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob("*.zip") if p.is_file())
            if not found:
                if (path / rt_manifest.MANIFEST_FILE).is_file():
                    raise ManifestError(
                        f"{path} is an extracted shard folder, not a folder of shard ZIPs: zip it "
                        "(manifest.ndjson at the ZIP root) or build it with make_shard(...)"
                    )
                raise ManifestError(
                    f"no shard ZIPs (*.zip) found in folder {path}: put one ZIP per site there, e.g. built with "
                    "make_shard_from_folder(...) or resontech_nb.data.synthetic.make_synthetic_shards(...)"
                )
            return found
        candidates = [path]
    else:
        candidates = [Path(p).expanduser() for p in paths]
        if not candidates:
            raise ManifestError("no shards given: pass a folder of shard ZIPs, one ZIP, or a list of ZIPs")
    seen: set[Path] = set()
    for candidate in candidates:
        if not candidate.exists():
            raise ManifestError(f"shard {candidate} does not exist: check the path (--shards)")
        if candidate.is_dir():
            raise ManifestError(
                f"{candidate} is a folder: pass it alone to use every *.zip inside, or list the ZIP files"
            )
        if candidate.suffix.lower() != ".zip":
            raise ManifestError(
                f"shard {candidate} is not a .zip file: shards are ZIPs with manifest.ndjson at the root"
            )
        resolved = candidate.resolve()
        if resolved in seen:
            raise ManifestError(f"shard {candidate} is listed twice: every site needs its own ZIP")
        seen.add(resolved)
    return candidates


def validate_shards(
    paths: str | Path | Sequence[str | Path],
    training: TrainingConfig | dict[str, Any] | None = None,
    check_remote: bool = True,
    *,
    timeout: float = 10,
    ssl_context: ssl.SSLContext | None = None,
) -> ShardSet:
    """Validate every shard and return a ``ShardSet``; raise ``ManifestError`` naming shard, line and fix.

    ``paths`` is a folder of ``*.zip`` (sorted; one site per ZIP), a single ZIP, or a list of ZIPs
    (kept in the given order). With ``training.num_classes == 0`` the class count is inferred as
    ``max(y) + 1`` over all shards; otherwise every label must be below it. With ``check_remote``
    every https URI must answer before anything is submitted.
    """
    training = as_config(TrainingConfig, training)
    zips = _list_shards(paths)
    per_shard: dict[str, list[rt_manifest.Sample]] = {}
    shards: dict[str, Path] = {}
    modes: dict[str, int] = {}
    sizes: dict[tuple[int, int], int] = {}
    for index, shard in enumerate(zips, start=1):
        try:
            samples = rt_manifest.read_manifest(shard, training.manifest_file, training.num_classes)
        except rt_manifest.ManifestError as exc:
            raise shard_error(shard, exc) from None
        if not samples:
            raise ManifestError(
                f"{shard.name}: the shard has no samples ({training.manifest_file} has no lines): "
                "add samples or leave this shard out"
            )
        check_images(shard, samples, training.manifest_file, modes, sizes)
        site = f"site-{index}"
        shards[site] = shard.resolve()
        per_shard[site] = samples

    warn_no_validation(per_shard, shards, training.val_fraction)
    remote = 0
    if check_remote:
        for site, samples in per_shard.items():
            try:
                remote += rt_https.check_remote(samples, timeout=timeout, ssl_context=ssl_context)
            except rt_manifest.ManifestError as exc:
                raise shard_error(shards[site], exc) from None

    inferred = rt_manifest.infer_num_classes(per_shard.values())
    num_classes = training.num_classes or inferred
    multi_label = any(rt_manifest.is_multi_label(samples) for samples in per_shard.values())
    if num_classes < 2 and not multi_label:
        log.warning("the shards hold only one class (label 0): a classifier needs at least two")
    counts: dict[str, dict[int, int]] = {}
    for site, samples in per_shard.items():
        site_counts: dict[int, int] = {}
        for sample in samples:
            for label in sample.y:
                site_counts[label] = site_counts.get(label, 0) + 1
        counts[site] = dict(sorted(site_counts.items()))
    result = ShardSet(
        shards=shards,
        samples={site: len(samples) for site, samples in per_shard.items()},
        num_classes=num_classes,
        multi_label=multi_label,
        remote_uris=remote,
        label_counts=counts,
        image_modes=modes,
        image_sizes=sizes,
    )
    warn_mixed_images(result)
    log.info("validated shards: %s", result.describe())
    return result


def warn_no_validation(
    per_shard: dict[str, list[rt_manifest.Sample]], shards: dict[str, Path], val_fraction: float
) -> None:
    """A warning for each site that will have no validation rows, when validation is asked for or other sites have
    some (the default loop's split: rows marked ``val``, else a ``val_fraction`` of them)."""
    empty = [site for site, samples in per_shard.items() if not rt_manifest.split_samples(samples, val_fraction)[1]]
    if empty and (val_fraction > 0 or len(empty) < len(per_shard)):
        names = ", ".join(f"{site} ({shards[site].name})" for site in empty)
        warnings.warn(
            f"{names} will have no validation rows: they train but report no validation; mark some rows "
            "meta.split='val' or raise val_fraction",
            DataWarning,
            stacklevel=3,
        )


def warn_mixed_images(shard_set: ShardSet) -> None:
    """A warning when the images differ in size or mode: the default loop resizes and converts them all."""
    if len(shard_set.image_sizes) > 1:
        seen = ", ".join(f"{w}x{h}" for w, h in sorted(shard_set.image_sizes)[:4])
        more = ", ..." if len(shard_set.image_sizes) > 4 else ""
        warnings.warn(
            f"the images have {len(shard_set.image_sizes)} different sizes ({seen}{more}): the default loop resizes "
            "every one to img_size; resize them yourself if the aspect ratio matters",
            DataWarning,
            stacklevel=3,
        )
    if len(shard_set.image_modes) > 1:
        warnings.warn(
            f"the images mix modes {', '.join(sorted(shard_set.image_modes))}: the default loop converts each to the "
            "channels the model expects",
            DataWarning,
            stacklevel=3,
        )


def check_images(
    shard: Path,
    samples: Sequence[rt_manifest.Sample],
    manifest_file: str,
    modes: dict[str, int] | None = None,
    sizes: dict[tuple[int, int], int] | None = None,
) -> None:
    """Every ``file://`` entry must be an image Pillow can open, the way the sites read it; ``modes`` and
    ``sizes``, when given, count the images' Pillow modes and (width, height).

    Only the headers are parsed (``Image.open``) and the file's structure checked (``verify``: chunk
    checksums, no pixel decoding), so a text file named ``.png`` or a truncated PNG fails here, not on a site.
    """
    from PIL import Image, UnidentifiedImageError

    with zipfile.ZipFile(shard) as archive:
        for sample in samples:
            if sample.is_remote:
                continue
            name = posixpath.normpath(sample.relative_path.replace("\\", "/"))
            try:
                with archive.open(name) as stream, Image.open(stream) as image:
                    if modes is not None:
                        modes[image.mode] = modes.get(image.mode, 0) + 1
                    if sizes is not None:
                        sizes[image.size] = sizes.get(image.size, 0) + 1
                    image.verify()
            except UnidentifiedImageError:
                reason = "no image format Pillow knows starts this way"
            except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a bad file
                reason = str(exc).split("\n", 1)[0] or type(exc).__name__
            else:
                continue
            raise ManifestError(
                f"line {sample.line} of {manifest_file} in {shard.name}: {sample.uri} is not a readable image "
                f"({reason}): replace it with a PNG or JPEG file, or drop the line"
            )
