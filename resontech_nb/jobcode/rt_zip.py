"""Shard ZIPs: read-only access to a shard (a ZIP or an extracted folder) and safe extraction.

Every ZIP entry name is checked before anything is read or written: an absolute path, a drive
letter, ``..`` or a NUL character would escape the shard root (zip-slip) and is refused.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module ``rt_zip``;
the notebook side imports it as ``resontech_nb.jobcode.rt_zip``. Standard library only; it never
imports resontech_nb.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

if __package__:  # the notebook side: resontech_nb.jobcode.rt_zip
    from .rt_sample import ManifestError
else:  # a job's custom/ folder, where every rt_* module is top-level
    from rt_sample import ManifestError

log = logging.getLogger(__name__)

EXTRACT_MARKER = ".rt_extracted.json"
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024


def unsafe_reason(name: str) -> str:
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


class ShardView:
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
            reason = unsafe_reason(info.filename)
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

    def __enter__(self) -> ShardView:
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
        with ShardView(zip_path) as view:  # validates every entry name first
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
