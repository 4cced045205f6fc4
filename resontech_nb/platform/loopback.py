"""Run the whole platform path on one machine: the embedded S3 server and a fault-injecting proxy.

``EmbeddedS3`` (see ``embedded_s3.py``) is SeaweedFS on loopback, so ``resontech-nb serve
--embedded-s3`` needs no cloud account. ``ForwardingProxy`` sits in front of any HTTP server on
loopback and counts the bytes clients send through it. It injects two kinds of faults:

- ``fail_after_forward``: the first matching request is forwarded, its answer dropped and a 503
  sent instead - a gateway timing out although the upstream did the work (the retry must then be
  deduplicated);
- ``fail_before_forward``: matching requests are answered with an error status (500, 503, ...)
  without reaching the upstream at all - a store that is briefly unavailable (the client must retry).
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .embedded_s3 import EmbeddedS3

__all__ = ["EmbeddedS3", "ForwardingProxy", "s3_error"]

log = logging.getLogger(__name__)

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


class ForwardingProxy:
    """An HTTP proxy on loopback in front of ``upstream`` that counts request bytes by method.

    ``fail_after_forward(method, path) -> bool`` is asked once per request; the first time it
    says yes, the request is forwarded, its answer dropped, and the client gets a 503 instead.
    ``fail_before_forward(method, path) -> int | None`` is asked for every request before it is
    forwarded; a status code it returns is answered at once (with an S3-style error body), the
    upstream never sees that request.
    """

    def __init__(
        self,
        upstream: str,
        fail_after_forward: Callable[[str, str], bool] | None = None,
        fail_before_forward: Callable[[str, str], int | None] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.fail_after_forward = fail_after_forward
        self.fail_before_forward = fail_before_forward
        self.bytes_by_method: Counter[str] = Counter()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status returned to the client)
        self._failed_once = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ForwardingProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_by_method.clear()
            self.requests.clear()

    def __enter__(self) -> ForwardingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _should_fail(self, method: str, path: str) -> bool:
        if self.fail_after_forward is None:
            return False
        with self._lock:
            if self._failed_once or not self.fail_after_forward(method, path):
                return False
            self._failed_once = True
            return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                log.debug("proxy: " + format, *args)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self) -> None:
                body = self._body()
                injected = proxy.fail_before_forward(self.command, self.path) if proxy.fail_before_forward else None
                if injected is not None:
                    self._send(injected, "Injected", [("Content-Type", "application/xml")], s3_error(injected))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
                    headers["Content-Length"] = str(len(body))
                with proxy._lock:
                    proxy.bytes_by_method[self.command] += len(body)
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status, reason, answer_headers = response.status, response.reason, response.getheaders()
                finally:
                    conn.close()
                if proxy._should_fail(self.command, self.path):
                    self._send(
                        503,
                        "Service Unavailable",
                        [("Content-Type", "application/json")],
                        b'{"error": "gateway timeout (injected by the proxy)"}',
                    )
                    return
                self._send(status, reason, answer_headers, payload)

            def _send(self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, status))
                self.send_response(status, reason)
                has_length = False
                for key, value in headers:
                    if key.lower() in _HOP_BY_HOP:
                        continue
                    if key.lower() == "content-length":
                        if self.command == "HEAD":
                            has_length = True
                            self.send_header(key, value)
                        continue
                    self.send_header(key, value)
                if not has_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD" and payload:
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        return Handler


def s3_error(status: int) -> bytes:
    """An S3 error document for ``status`` (what boto3 parses to decide whether to retry)."""
    code = {500: "InternalError", 503: "SlowDown"}.get(status, "ServiceUnavailable")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected by the proxy</Message><RequestId>proxy</RequestId></Error>"
    ).encode()
