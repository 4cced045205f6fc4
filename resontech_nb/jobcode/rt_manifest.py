"""Shard manifests: reading, validation, safe extraction, https fetching and the image dataset.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_manifest``; the notebook side imports it as ``resontech_nb.jobcode.rt_manifest``. It needs only
the standard library, numpy, torch and Pillow, and it never imports resontech_nb.

A shard is a ZIP (or an already extracted folder) with ``manifest.ndjson`` at its root, one JSON
object a line::

    {"id": "img-001", "uri": "file://images/img-001.png", "y": [2], "meta": {"source": "scan-7"}}

``uri`` is ``file://`` relative to the shard root or ``https://`` (downloaded once into a cache);
``y`` holds label indices (a bare int is one label); ``meta`` is optional.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.ndjson"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
EXTRACT_MARKER = ".rt_extracted.json"
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024


class ManifestError(ValueError):
    """A shard or its manifest is invalid; the message names the fix."""


@dataclass(frozen=True)
class Sample:
    """One manifest line: ``y`` is always a tuple of label indices; ``line`` is its 1-based line number."""

    id: str
    uri: str
    y: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    line: int = 0

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith("https://")

    @property
    def relative_path(self) -> str:
        """The shard-relative path of a ``file://`` URI ("" for https)."""
        return "" if self.is_remote else urllib.parse.unquote(self.uri[len("file://") :])


# -- paths -------------------------------------------------------------------------------------


def _unsafe_reason(name: str) -> str:
    """Why ``name`` (a ZIP entry or relative path) would escape the shard root, or "" if it is safe."""
    norm = name.replace("\\", "/")
    if norm.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(norm):
        return "it starts with a drive letter"
    if any(part == ".." for part in norm.split("/")):
        return "it contains '..'"
    if "\x00" in norm:
        return "it contains a NUL character"
    return ""


def _shard_label(shard: str | Path) -> str:
    return Path(shard).name or str(shard)


class _ShardView:
    """Read-only access to a shard that is either a ZIP file or an extracted folder."""

    def __init__(self, shard: str | Path) -> None:
        self.path = Path(shard)
        self.label = _shard_label(shard)
        self._zip: zipfile.ZipFile | None = None
        self._files: set[str] = set()
        if self.path.is_dir():
            return
        if not self.path.exists():
            raise ManifestError(f"shard {self.path} does not exist: check the path")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ManifestError(
                f"shard {self.label} is not a readable ZIP file ({exc}): rebuild it, e.g. with make_shard(...)"
            ) from None
        for info in self._zip.infolist():
            reason = _unsafe_reason(info.filename)
            if reason:
                self.close()
                raise ManifestError(
                    f"ZIP entry {info.filename!r} in {self.label} escapes the shard ({reason}): "
                    "rebuild the ZIP with paths relative to its root"
                )
            if not info.is_dir():
                self._files.add(posixpath.normpath(info.filename.replace("\\", "/")))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> _ShardView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_file(self, rel: str) -> bool:
        rel = posixpath.normpath(rel.replace("\\", "/"))
        if self._zip is not None:
            return rel in self._files
        return (self.path / rel).is_file()

    def read(self, rel: str) -> bytes:
        rel = posixpath.normpath(rel.replace("\\", "/"))
        if self._zip is not None:
            return self._zip.read(rel)
        return (self.path / rel).read_bytes()

    def find_nested(self, filename: str) -> list[str]:
        if self._zip is not None:
            names = self._files
        else:
            names = {p.relative_to(self.path).as_posix() for p in self.path.rglob(filename) if p.is_file()}
        return sorted(n for n in names if n.rsplit("/", 1)[-1] == filename and "/" in n)


# -- reading -----------------------------------------------------------------------------------


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


def _check_uri(uri: Any, where: str, view: _ShardView) -> str:
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
    reason = _unsafe_reason(rel)
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


def _parse_line(text: str, lineno: int, view: _ShardView, manifest_file: str, num_classes: int) -> Sample:
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
    with _ShardView(shard_zip_or_dir) as view:
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


# -- extraction --------------------------------------------------------------------------------


def _zip_fingerprint(zip_path: Path) -> dict[str, Any]:
    stat = zip_path.stat()
    return {"zip": str(zip_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def safe_extract(zip_path: str | Path, dest: str | Path) -> Path:
    """Extract ``zip_path`` into ``dest`` refusing entries that escape it; return ``dest``.

    A marker file records the ZIP's size and mtime, so a second call for the same unchanged ZIP
    extracts nothing. Extraction goes to a temporary sibling folder that is renamed into place.
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    if not zip_path.is_file():
        raise ManifestError(f"shard {zip_path} does not exist: check the path")
    fingerprint = _zip_fingerprint(zip_path)
    marker = dest / EXTRACT_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == fingerprint:
                return dest
        except (OSError, ValueError):
            pass
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not marker.is_file())):
        raise ManifestError(
            f"cannot extract {zip_path.name} into {dest}: it exists and was not made by safe_extract; "
            "choose a new or empty folder"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with _ShardView(zip_path) as view:  # validates every entry name first
            assert view._zip is not None
            root = staging.resolve()
            for info in view._zip.infolist():
                target = (staging / info.filename.replace("\\", "/")).resolve()
                if target != root and root not in target.parents:
                    raise ManifestError(
                        f"ZIP entry {info.filename!r} in {view.label} escapes the shard: rebuild the ZIP"
                    )
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with view._zip.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        (staging / EXTRACT_MARKER).write_text(json.dumps(fingerprint), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(staging, dest)
        except OSError:
            # another process extracted the same ZIP at the same moment: keep its copy
            if not (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == fingerprint):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return dest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("extracted %s into %s", zip_path, dest)
    return dest


# -- https -------------------------------------------------------------------------------------


def _download_error(uri: str, reason: object) -> ManifestError:
    return ManifestError(f"could not download {uri}: {reason}; check the URL or make the file part of the shard")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _require_https(uri: str) -> None:
    if not uri.startswith("https://"):
        raise ManifestError(f"only https:// URIs can be downloaded, got {uri!r}: use https://")


def cache_path(uri: str, cache_dir: str | Path) -> Path:
    """Where ``uri`` is cached: the sha256 of the URI, keeping the file's extension."""
    suffix = Path(urllib.parse.urlsplit(uri).path).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix or ""):
        suffix = ""
    return Path(cache_dir) / (hashlib.sha256(uri.encode("utf-8")).hexdigest() + suffix)


def fetch_https(
    uri: str,
    cache_dir: str | Path,
    timeout: float = 30,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> Path:
    """Download ``uri`` once into ``cache_dir`` and return the cached file.

    The write is atomic (temporary file, then rename); larger than ``max_bytes`` or slower than
    ``timeout`` seconds per socket operation fails with ``ManifestError``.
    """
    _require_https(uri)
    target = cache_path(uri, cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(uri, headers={"User-Agent": "resontech-nb-manifest"})
    fd, tmp_name = tempfile.mkstemp(prefix=".dl-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=ssl_context) as response:
                    length = response.headers.get("Content-Length")
                    if length and length.isdigit() and int(length) > max_bytes:
                        raise _download_error(uri, f"it is {int(length)} bytes, more than the {max_bytes}-byte cap")
                    total = 0
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > max_bytes:
                            raise _download_error(uri, f"it is larger than the {max_bytes}-byte cap")
                        out.write(chunk)
            except ManifestError:
                raise
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise _download_error(uri, _reason(exc)) from None
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    log.info("downloaded %s (%d bytes)", uri, target.stat().st_size)
    return target


def _probe(uri: str, timeout: float, ssl_context: ssl.SSLContext | None) -> str:
    """"" when ``uri`` answers, else the reason it does not. Tries HEAD, then a 1-byte ranged GET."""
    last = ""
    for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-0"})):
        request = urllib.request.Request(
            uri, method=method, headers={"User-Agent": "resontech-nb-manifest", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=ssl_context) as response:
                if method == "GET":
                    response.read(1)
                return ""
        except urllib.error.HTTPError as exc:
            last = _reason(exc)
            if exc.code not in (403, 405, 501):  # some servers refuse HEAD only
                return last
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return _reason(exc)
    return last


def check_remote(
    samples: Sequence[Sample],
    timeout: float = 10,
    ssl_context: ssl.SSLContext | None = None,
    max_workers: int = 8,
) -> int:
    """Check every distinct https URI in ``samples`` answers; return how many were checked.

    Raises ``ManifestError`` for the first unreachable one (in manifest order), naming its line.
    """
    first_line: dict[str, int] = {}
    for sample in samples:
        if sample.is_remote:
            first_line.setdefault(sample.uri, sample.line)
    if not first_line:
        return 0
    uris = list(first_line)
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(uris)))) as pool:
        reasons = list(pool.map(lambda u: _probe(u, timeout, ssl_context), uris))
    for uri, reason in zip(uris, reasons, strict=True):
        if reason:
            line = first_line[uri]
            where = f" (line {line})" if line else ""
            raise _download_error(f"{uri}{where}", reason)
    return len(uris)


# -- dataset -----------------------------------------------------------------------------------


class ManifestDataset(Dataset):
    """Images of a shard (extracted into ``root_dir``) as ``(CHW float tensor, target)`` pairs.

    Images are converted to RGB, resized to ``img_size`` x ``img_size``, scaled to [0, 1] and
    normalized with mean 0.5 / std 0.5. The target is the class index (long) for single-label data
    and a multi-hot float vector of length ``num_classes`` for multi-label data.
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
    ) -> None:
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
            img = img.convert("RGB")
            if img.size != (self.img_size, self.img_size):
                img = img.resize((self.img_size, self.img_size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32)
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
