"""S3 uploads for the ``resontech`` target: content-addressed, multipart, checksummed.

Every file lands at ``<s3_prefix>/blobs/sha256/<hex digest>``. Before uploading, the key is
checked with a HEAD request; when the object is there with the same size and sha256, nothing
is sent. So a re-submit with unchanged shards (and an unchanged model) uploads nothing again.

Works with any S3-compatible endpoint (``s3_endpoint_url``: AWS, MinIO, Ceph, SeaweedFS). Credentials
come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, profiles, roles).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.settings import ResonTechConfig
from ...errors import StorageError
from .s3_failures import RETRIES, checksum_unsupported, http_status, storage_error

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # fixed, so the same folder always zips to the same bytes


@dataclass(frozen=True)
class UploadedBlob:
    """One file in S3: where it is, what it hashes to, and whether this call sent it."""

    key: str
    sha256: str
    size: int
    uploaded: bool


@dataclass
class UploadReport:
    """What an upload call did: the key of each named file, and the bytes sent or skipped."""

    keys: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    bytes_uploaded: int = 0
    bytes_skipped: int = 0
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, name: str, blob: UploadedBlob) -> None:
        self.keys[name] = blob.key
        self.sha256[name] = blob.sha256
        if blob.uploaded:
            self.bytes_uploaded += blob.size
            self.uploaded.append(name)
        else:
            self.bytes_skipped += blob.size
            self.skipped.append(name)

    def merge(self, other: UploadReport) -> UploadReport:
        for name in other.keys:
            self.keys[name] = other.keys[name]
            self.sha256[name] = other.sha256[name]
        self.bytes_uploaded += other.bytes_uploaded
        self.bytes_skipped += other.bytes_skipped
        self.uploaded += other.uploaded
        self.skipped += other.skipped
        return self


def sha256_file(path: str | Path, chunk: int = 4 * MiB) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def zip_dir_deterministic(folder: str | Path, dest: str | Path) -> Path:
    """ZIP ``folder``'s contents with sorted entries and fixed timestamps: same folder, same bytes."""
    folder, dest = Path(folder), Path(dest)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, path.read_bytes())
    return dest


class S3Storage:
    """Content-addressed blobs in one bucket of an S3-compatible store."""

    def __init__(
        self,
        config: ResonTechConfig,
        *,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
        max_concurrency: int = 4,
        progress_threshold: int = 32 * MiB,
        connect_timeout: float = 5.0,
    ) -> None:
        if not config.s3_bucket:
            raise StorageError("no S3 bucket configured: set it with %fl_config s3_bucket=NAME")
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = config.s3_bucket
        self.endpoint = config.s3_endpoint_url or f"AWS S3 ({config.s3_region})"
        self.prefix = config.s3_prefix.strip("/")
        self.progress_threshold = progress_threshold
        botocore_config = Config(
            retries=dict(RETRIES),
            connect_timeout=connect_timeout,
            read_timeout=120,
            s3={"addressing_style": "path"} if config.s3_endpoint_url else {},
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.s3_endpoint_url or None,
            region_name=config.s3_region or None,
            config=botocore_config,
        )
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=True,
        )
        self._bucket_checked = False

    # -- keys -----------------------------------------------------------------------
    def key_for(self, sha256: str) -> str:
        blob = f"blobs/sha256/{sha256}"
        return f"{self.prefix}/{blob}" if self.prefix else blob

    # -- uploads --------------------------------------------------------------------
    def check_bucket(self) -> None:
        """Fail early, with the fix, when the bucket is missing or the keys are wrong."""
        if self._bucket_checked:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - translated into StorageError below
            raise storage_error(exc, self, "open the bucket") from None
        self._bucket_checked = True

    def upload_file(self, path: str | Path, sha256: str | None = None) -> UploadedBlob:
        """Upload ``path`` unless its content is already in the bucket."""
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"cannot upload {path}: no such file")
        self.check_bucket()
        size = path.stat().st_size
        digest = sha256 or sha256_file(path)
        key = self.key_for(digest)
        if self._matches(key, size, digest):
            log.info("s3://%s/%s already holds %s (%d bytes): skipped", self.bucket, key, path.name, size)
            return UploadedBlob(key, digest, size, uploaded=False)
        extra = {"Metadata": {SHA256_METADATA: digest}, "ChecksumAlgorithm": "SHA256"}
        bar = self._progress(path.name, size)
        callback = bar.update if bar is not None else None
        try:
            try:
                self.client.upload_file(
                    str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer_config, Callback=callback
                )
            except Exception as exc:  # noqa: BLE001
                if not checksum_unsupported(exc):
                    raise
                # Some S3-compatible stores reject ChecksumAlgorithm: fall back to our own sha256 check.
                extra.pop("ChecksumAlgorithm")
                self.client.upload_file(
                    str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer_config, Callback=callback
                )
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise storage_error(exc, self, f"upload {path.name}") from None
        finally:
            if bar is not None:
                bar.close()
        if not self._matches(key, size, digest):
            raise StorageError(
                f"upload of {path.name} to s3://{self.bucket}/{key} did not verify (size or sha256 differ): "
                "submit again"
            )
        log.info("uploaded %s (%d bytes) to s3://%s/%s", path.name, size, self.bucket, key)
        return UploadedBlob(key, digest, size, uploaded=True)

    def upload_files(self, files: Mapping[str, str | Path]) -> UploadReport:
        """Upload named files (e.g. ``{"site-1": shard_zip}``); the report maps each name to its key."""
        report = UploadReport()
        for name, path in files.items():
            report.add(name, self.upload_file(path))
        return report

    def upload_dir_as_zip(self, folder: str | Path, name: str = "job") -> UploadReport:
        """ZIP ``folder`` deterministically and upload it; the report's key for ``name`` is the ZIP's."""
        with tempfile.TemporaryDirectory(prefix="rt_zip_") as tmp:
            archive = zip_dir_deterministic(folder, Path(tmp) / f"{name}.zip")
            report = UploadReport()
            report.add(name, self.upload_file(archive))
            return report

    # -- downloads ------------------------------------------------------------------
    def download(self, key: str, dest: str | Path, sha256: str | None = None) -> Path:
        """Download ``key`` to ``dest`` and verify its sha256: ``sha256`` when given (what the object was
        submitted with: the object's own metadata cannot vouch for a replaced object), else the metadata's,
        else the one in the key."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        head = self._head(key)
        if head is None:
            raise StorageError(f"s3://{self.bucket}/{key} does not exist at {self.endpoint}: upload it again")
        expected = sha256 or (head.get("Metadata") or {}).get(SHA256_METADATA) or _digest_from_key(key)
        partial = dest.with_name(dest.name + ".part")
        try:
            self.client.download_file(self.bucket, key, str(partial), Config=self.transfer_config)
        except Exception as exc:  # noqa: BLE001
            partial.unlink(missing_ok=True)
            raise storage_error(exc, self, f"download {key}") from None
        actual = sha256_file(partial)
        if expected and actual != expected:
            partial.unlink(missing_ok=True)
            raise StorageError(
                f"checksum mismatch for s3://{self.bucket}/{key}: expected sha256 {expected[:12]}…, "
                f"got {actual[:12]}…; the object is corrupt: upload it again"
            )
        os.replace(partial, dest)
        return dest

    # -- helpers --------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            if http_status(exc) == 404:
                return None
            raise storage_error(exc, self, f"look up {key}") from None

    def _matches(self, key: str, size: int, sha256: str) -> bool:
        head = self._head(key)
        if head is None or int(head.get("ContentLength", -1)) != size:
            return False
        stored = (head.get("Metadata") or {}).get(SHA256_METADATA)
        return stored is None or stored == sha256

    def _progress(self, label: str, size: int) -> Any:
        if size < self.progress_threshold:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {label}", leave=False)


def _digest_from_key(key: str) -> str | None:
    tail = key.rsplit("/", 1)[-1]
    if len(tail) == 64 and all(c in "0123456789abcdef" for c in tail):
        return tail
    return None


def read_bytes(storage: S3Storage, key: str) -> bytes:
    """Small helper for tests and tools: the bytes of one object, verified."""
    with tempfile.TemporaryDirectory(prefix="rt_dl_") as tmp:
        path = storage.download(key, Path(tmp) / "blob")
        return path.read_bytes()
