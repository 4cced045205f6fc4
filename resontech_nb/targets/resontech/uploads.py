"""Uploads for the ``resontech`` target through URLs the platform presigns: the notebook holds no S3 keys.

The client sends each file's sha256 and size to ``POST /api/v1/uploads``; the platform answers, per
file, "already in your prefix" (nothing is sent: a re-submit with unchanged shards uploads 0 bytes)
or a presigned PUT URL for that one key, with the size and sha256 signed in. The file then goes
straight to the S3 store (not through the platform); dropped connections and 5xx answers are
retried, and a second plan call confirms that every object arrived. One object is at most 5 GiB
(a single presigned PUT; shards and job ZIPs are far smaller).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ...errors import StorageError
from .rest import PlatformClient
from .storage import MiB, UploadedBlob, UploadReport, sha256_file, zip_dir_deterministic

log = logging.getLogger(__name__)


class PresignedUploader:
    """Content-addressed uploads into this account's own prefix, through the platform's presigned URLs."""

    def __init__(
        self, client: PlatformClient, *, retries: int = 4, timeout: float = 120.0, progress_threshold: int = 32 * MiB
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.progress_threshold = progress_threshold
        self.session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.3,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"PUT"}),  # a PUT of the same bytes to the same key is idempotent
            raise_on_status=False,
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def upload_files(self, files: Mapping[str, str | Path]) -> UploadReport:
        """Upload named files (e.g. ``{"site-1": shard_zip}``); the report maps each name to its sha256."""
        described: dict[str, tuple[Path, str, int]] = {}
        for name, path in files.items():
            path = Path(path)
            if not path.is_file():
                raise StorageError(f"cannot upload {path}: no such file")
            described[name] = (path, sha256_file(path), path.stat().st_size)
        wanted = {(digest, size): path for path, digest, size in described.values()}
        tickets = self._plan(wanted)
        sent: set[str] = set()
        for (digest, size), path in wanted.items():
            ticket = tickets[digest]
            if not ticket["present"]:
                self._put(path, size, ticket)
                sent.add(digest)
        missing = [t["sha256"][:12] for t in self._plan(wanted).values() if not t["present"]]
        if missing:
            raise StorageError(f"the upload of {len(missing)} file(s) did not verify on the platform: submit again")
        report = UploadReport()
        for name, (path, digest, size) in described.items():
            uploaded = digest in sent
            sent.discard(digest)  # a file named twice is sent once
            report.add(name, UploadedBlob(tickets[digest]["key"], digest, size, uploaded=uploaded))
            if not uploaded:
                log.info("%s (%d bytes) is already on the platform: skipped", path.name, size)
        return report

    def upload_dir_as_zip(self, folder: str | Path, name: str = "job") -> UploadReport:
        """ZIP ``folder`` deterministically and upload it; the report's sha256 for ``name`` is the ZIP's."""
        with tempfile.TemporaryDirectory(prefix="rt_zip_") as tmp:
            archive = zip_dir_deterministic(folder, Path(tmp) / f"{name}.zip")
            return self.upload_files({name: archive})

    # -- helpers --------------------------------------------------------------------
    def _plan(self, wanted: Mapping[tuple[str, int], Path]) -> dict[str, dict[str, Any]]:
        objects = [{"sha256": digest, "size": size} for digest, size in wanted]
        return {ticket["sha256"]: ticket for ticket in self.client.plan_uploads(objects)}

    def _put(self, path: Path, size: int, ticket: dict[str, Any]) -> None:
        store = urlsplit(ticket["url"]).netloc
        bar = self._progress(path.name, size)
        try:
            with open(path, "rb") as f:
                body: Any = f
                if bar is not None:
                    from tqdm.utils import CallbackIOWrapper

                    body = CallbackIOWrapper(bar.update, f, "read")
                headers = {**ticket["headers"], "Content-Length": str(size)}
                response = self.session.put(ticket["url"], data=body, headers=headers, timeout=self.timeout)
        except requests.ConnectionError:
            raise StorageError(
                f"cannot reach the platform's object store at {store} (where its upload URLs point): check the "
                "network, or ask the platform's host which S3 endpoint notebook users can reach"
            ) from None
        except requests.RequestException as exc:
            why = type(exc).__name__
            raise StorageError(f"upload of {path.name} to {store} failed ({why}): submit again") from None
        finally:
            if bar is not None:
                bar.close()
        if not response.ok:
            code = _s3_code(response.text)
            raise StorageError(
                f"the object store at {store} refused the upload of {path.name} ({response.status_code} {code}): "
                + ("the file changed while it was sent: submit again" if code == "BadDigest" else "submit again")
            )
        log.info("uploaded %s (%d bytes) to the platform's store", path.name, size)

    def _progress(self, label: str, size: int) -> Any:
        if size < self.progress_threshold:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {label}", leave=False)


def _s3_code(text: str) -> str:
    start = text.find("<Code>")
    end = text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else "error"
