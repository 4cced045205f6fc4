"""The https download cache: ``fetch_https`` downloads a manifest's ``https://`` URI once into a cache
folder, ``check_remote`` checks that every such URI answers.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module ``rt_https``;
the notebook side imports it as ``resontech_nb.jobcode.rt_https``. Standard library only; it never
imports resontech_nb.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__:  # the notebook side: resontech_nb.jobcode.rt_https
    from .rt_sample import ManifestError, Sample
else:  # a job's custom/ folder, where every rt_* module is top-level
    from rt_sample import ManifestError, Sample

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
_CHUNK = 1024 * 1024


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
