"""Each user's objects in the platform's bucket, reached only through the platform.

Notebook users hold no bucket keys. They ask ``POST /api/v1/uploads`` for the objects they want to
send (sha256 and size); each object lives at ``<prefix>/users/<user id>/sha256/<hex digest>`` and is
either already there (a re-submit with unchanged shards sends nothing) or gets a presigned PUT URL:
short-lived, for that one key, with the size and the sha256 signed in (S3 refuses other bytes with
``BadDigest``). Jobs name their objects by sha256, and the platform only reads them under the
submitting user's prefix, checking each download against that sha256 again. So one user's token
reaches neither another user's objects nor the fact that they exist.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from ..errors import ResonTechError, StorageError
from ..targets.resontech.s3_failures import storage_error
from ..targets.resontech.storage import SHA256_METADATA, S3Storage
from .models import MAX_OBJECT_BYTES

__all__ = ["MAX_OBJECT_BYTES", "URL_TTL_S", "UserObjects", "user_id"]

log = logging.getLogger(__name__)

URL_TTL_S = 900  # a presigned PUT URL is valid this long


def user_id(email: str) -> str:
    """A stable id for ``email`` that names its prefix without showing the address in the bucket."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:24]


class UserObjects:
    """The per-user view of the platform's bucket: plans uploads, presigns PUTs, downloads verified."""

    def __init__(self, storage: S3Storage, url_ttl_s: int = URL_TTL_S) -> None:
        self.storage = storage
        self.url_ttl_s = url_ttl_s

    def prefix(self, email: str) -> str:
        users = f"users/{user_id(email)}/"
        return f"{self.storage.prefix}/{users}" if self.storage.prefix else users

    def key(self, email: str, sha256: str) -> str:
        return f"{self.prefix(email)}sha256/{sha256}"

    def plan(self, email: str, objects: list[tuple[str, int]]) -> list[dict[str, Any]]:
        """For each ``(sha256, size)``: already in this user's prefix, or a presigned PUT URL for it."""
        self.storage.check_bucket()  # a missing bucket: refused here, not created by the first PUT
        tickets = []
        for sha256, size in objects:
            key = self.key(email, sha256)
            ticket: dict[str, Any] = {"sha256": sha256, "size": size, "key": key}
            if self.storage._matches(key, size, sha256):
                tickets.append({**ticket, "present": True, "url": None, "headers": {}, "expires_at": None})
                continue
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
            params = {
                "Bucket": self.storage.bucket,
                "Key": key,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
                "Metadata": {SHA256_METADATA: sha256},
            }
            try:
                url = self.storage.client.generate_presigned_url("put_object", Params=params, ExpiresIn=self.url_ttl_s)
            except Exception as exc:  # noqa: BLE001 - no credentials or a bad endpoint: the host's to fix
                raise storage_error(exc, self.storage, "sign an upload URL") from None
            headers = {"x-amz-checksum-sha256": checksum, f"x-amz-meta-{SHA256_METADATA}": sha256}
            expires_at = time.time() + self.url_ttl_s
            tickets.append({**ticket, "present": False, "url": url, "headers": headers, "expires_at": expires_at})
        return tickets

    def download(self, email: str, what: str, sha256: str, dest: Path) -> Path:
        """Fetch the object ``sha256`` of ``email`` to ``dest``, checked against that sha256.

        An object that is missing fails with the object's name; one whose bytes differ is deleted (so the
        next upload replaces it) and fails likewise.
        """
        key = self.key(email, sha256)
        if self.storage._head(key) is None:
            raise ResonTechError(
                f"the {what} (sha256 {sha256[:12]}…) is not among this account's uploads: upload it "
                "(POST /api/v1/uploads) and submit the job again"
            )
        try:
            return self.storage.download(key, dest, sha256=sha256)
        except StorageError as exc:
            if "checksum mismatch" not in str(exc):
                raise
            try:
                self.storage.client.delete_object(Bucket=self.storage.bucket, Key=key)
            except Exception as delete_exc:  # noqa: BLE001 - the job fails by name either way
                log.warning("could not delete the corrupt object %s: %s", key, type(delete_exc).__name__)
            raise ResonTechError(
                f"the {what} in S3 is not what was submitted (its sha256 differs: replaced or corrupted after the "
                "submit): submit the job again"
            ) from None
