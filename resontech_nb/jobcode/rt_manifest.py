"""Shard manifests: reading and validating ``manifest.ndjson``, label counts; the public names of the
shard modules in one place.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_manifest``; the notebook side imports it as ``resontech_nb.jobcode.rt_manifest``. It needs only
the standard library, numpy, torch and Pillow, and it never imports resontech_nb.

A shard is a ZIP (or an already extracted folder) with ``manifest.ndjson`` at its root, one JSON
object a line::

    {"id": "img-001", "uri": "file://images/img-001.png", "y": [2], "meta": {"source": "scan-7"}}

``uri`` is ``file://`` relative to the shard root or ``https://`` (downloaded once into a cache);
``y`` holds label indices (a bare int is one label); ``meta`` is optional.

The other concepts live in their own modules and are re-exported here: ``Sample`` and
``ManifestError`` (``rt_sample``), ZIP access and ``safe_extract`` (``rt_zip``), the https cache
(``rt_https``) and ``ManifestDataset`` (``rt_dataset``).
"""

from __future__ import annotations

import json
import urllib.parse
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __package__:  # the notebook side: resontech_nb.jobcode.rt_manifest
    from .rt_dataset import ManifestDataset
    from .rt_https import DEFAULT_MAX_BYTES, cache_path, check_remote, fetch_https
    from .rt_sample import ManifestError, Sample
    from .rt_zip import EXTRACT_MARKER, ShardView, safe_extract, unsafe_reason
else:  # a job's custom/ folder, where every rt_* module is top-level
    from rt_dataset import ManifestDataset
    from rt_https import DEFAULT_MAX_BYTES, cache_path, check_remote, fetch_https
    from rt_sample import ManifestError, Sample
    from rt_zip import EXTRACT_MARKER, ShardView, safe_extract, unsafe_reason

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EXTRACT_MARKER",
    "MANIFEST_FILE",
    "ManifestDataset",
    "ManifestError",
    "Sample",
    "cache_path",
    "check_remote",
    "fetch_https",
    "infer_num_classes",
    "is_multi_label",
    "read_manifest",
    "safe_extract",
]

MANIFEST_FILE = "manifest.ndjson"


def _parse_labels(value: Any, where: str, num_classes: int) -> tuple[int, ...]:
    if isinstance(value, bool) or value is None:
        raise ManifestError(f"{where}: 'y' must be a label index or a list of them, got {value!r}")
    labels = [value] if isinstance(value, int) else value
    if not isinstance(labels, list):
        raise ManifestError(f"{where}: 'y' must be a label index or a list of them, got {value!r}")
    out = []
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, int):
            raise ManifestError(f"{where}: label {label!r} in 'y' is not an integer: use class indices like 0, 1, 2")
        if label < 0:
            raise ManifestError(f"{where}: label {label} is negative: class indices start at 0")
        if num_classes > 0 and label >= num_classes:
            raise ManifestError(
                f"label {label} on {where} is out of range for num_classes={num_classes}: "
                "raise num_classes or set it to 0 to infer it"
            )
        out.append(label)
    if len(set(out)) != len(out):
        raise ManifestError(f"{where}: 'y' lists a label twice ({out}): list each label once")
    return tuple(out)


def _check_uri(uri: Any, where: str, view: ShardView) -> str:
    if not isinstance(uri, str) or not uri:
        raise ManifestError(f"{where}: 'uri' must be a non-empty string like \"file://images/a.png\"")
    if uri.startswith("https://"):
        if not urllib.parse.urlsplit(uri).hostname:
            raise ManifestError(f"{where}: https URI {uri!r} has no host: write https://host/path")
        return uri
    if uri.startswith("http://"):
        raise ManifestError(f"{where}: plain http:// URIs are refused ({uri}): use https://")
    if not uri.startswith("file://"):
        raise ManifestError(
            f"{where}: unsupported URI {uri!r}: use file://<path relative to the shard root> or https://..."
        )
    rel = urllib.parse.unquote(uri[len("file://") :])
    if not rel:
        raise ManifestError(f"{where}: 'uri' {uri!r} names no file: write file://images/a.png")
    reason = unsafe_reason(rel)
    if reason:
        raise ManifestError(
            f"{where}: URI {uri!r} escapes the shard ({reason}): use a path relative to the shard root, "
            "e.g. file://images/a.png"
        )
    if not view.has_file(rel):
        raise ManifestError(
            f"{where}: {uri!r} points to {rel}, which is not in {view.label}: add the file or fix the uri"
        )
    return uri


def _parse_line(text: str, lineno: int, view: ShardView, manifest_file: str, num_classes: int) -> Sample:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"line {lineno} of {manifest_file} in {view.label} is not valid JSON: {exc}") from None
    where = f"line {lineno} of {manifest_file} in {view.label}"
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object with id, uri and y, got {type(obj).__name__}")
    missing = [key for key in ("id", "uri", "y") if key not in obj]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}: every line needs id, uri and y")
    sample_id = obj["id"]
    if not isinstance(sample_id, str) or not sample_id:
        raise ManifestError(f"{where}: 'id' must be a non-empty string, got {sample_id!r}")
    uri = _check_uri(obj["uri"], where, view)
    labels = _parse_labels(obj["y"], where, num_classes)
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: 'meta' must be a JSON object (or left out), got {type(meta).__name__}")
    return Sample(id=sample_id, uri=uri, y=labels, meta=meta, line=lineno)


def read_manifest(
    shard_zip_or_dir: str | Path, manifest_file: str = MANIFEST_FILE, num_classes: int = 0
) -> list[Sample]:
    """Read and validate a shard's manifest without extracting anything.

    Checks ZIP entry names (zip-slip), the manifest's place at the root, JSON on every line, the
    fields, unique ids, label range (when ``num_classes > 0``) and that every ``file://`` URI names a
    file inside the shard. Raises ``ManifestError`` naming the line and the fix.
    """
    with ShardView(shard_zip_or_dir) as view:
        if not view.has_file(manifest_file):
            nested = view.find_nested(manifest_file)
            hint = f" (found at {', '.join(nested[:3])})" if nested else ""
            raise ManifestError(
                f"{manifest_file} not found at the root of shard {view.label}{hint}: "
                "put it at the ZIP root, not in a subfolder"
            )
        raw = view.read(manifest_file)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ManifestError(
                f"{manifest_file} in {view.label} is not UTF-8 text ({exc}): save it as UTF-8"
            ) from None
        samples: list[Sample] = []
        seen: dict[str, int] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            sample = _parse_line(line, lineno, view, manifest_file, num_classes)
            if sample.id in seen:
                raise ManifestError(
                    f"line {lineno} of {manifest_file} in {view.label}: duplicate id {sample.id!r} "
                    f"(first on line {seen[sample.id]}): give every sample its own id"
                )
            seen[sample.id] = lineno
            samples.append(sample)
    return samples


def infer_num_classes(sample_lists: Iterable[Iterable[Sample]]) -> int:
    """``max(y) + 1`` over every sample of every list (0 when there are no labels)."""
    top = -1
    for samples in sample_lists:
        for sample in samples:
            if sample.y:
                top = max(top, max(sample.y))
    return top + 1


def is_multi_label(samples: Iterable[Sample]) -> bool:
    """True when any sample has other than exactly one label."""
    return any(len(sample.y) != 1 for sample in samples)


VALIDATION_SPLITS = frozenset({"val", "valid", "validation"})
TEST_SPLITS = frozenset({"test"})


def split_of(sample: Sample) -> str:
    """The row's ``meta.split``, lower case ("" when unmarked)."""
    return str((sample.meta or {}).get("split", "")).strip().lower()


def split_samples(samples: list[Sample], val_fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(training rows, validation rows) of a shard, the way the default loop splits it.

    Rows whose ``meta.split`` is ``"val"`` (or ``"valid"``, ``"validation"``) validate; rows marked ``"test"`` are
    used for neither. A shard without such rows holds out a deterministic ``val_fraction`` of its rows, chosen
    by a hash of each row's id, so every round and every run picks the same ones.
    """
    marked = [s for s in samples if split_of(s) in VALIDATION_SPLITS]
    usable = [s for s in samples if split_of(s) not in TEST_SPLITS]
    if marked:
        return [s for s in usable if split_of(s) not in VALIDATION_SPLITS], marked
    if val_fraction <= 0 or len(usable) < 2:
        return usable, []
    count = min(len(usable) - 1, max(1, round(len(usable) * val_fraction)))
    by_hash = sorted(usable, key=lambda s: (zlib.crc32(s.id.encode()), s.id))
    held_out = {s.id for s in by_hash[:count]}
    return [s for s in usable if s.id not in held_out], [s for s in usable if s.id in held_out]
