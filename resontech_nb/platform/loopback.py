"""Run the whole platform path on one machine: an embedded S3 server and a forwarding proxy.

``EmbeddedS3`` starts moto's S3 server on a free loopback port and creates the bucket, so
``resontech-nb serve --embedded-s3`` needs no cloud account. ``ForwardingProxy`` sits in front
of any HTTP server on loopback and counts the bytes clients send through it; it can also answer
503 to the first matching request *after* forwarding it - the failure a client sees when a
gateway times out although the upstream server did the work (the retry must then be deduplicated).
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

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


def quiet_request_logs() -> None:
    """Keep werkzeug from printing one line per HTTP request (S3 calls included), unless configured."""
    logger = logging.getLogger("werkzeug")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


class EmbeddedS3:
    """moto's S3 server on 127.0.0.1 (a free port unless given), with ``bucket`` created."""

    def __init__(self, bucket: str = "resontech-nb", host: str = "127.0.0.1", port: int = 0) -> None:
        self.bucket = bucket
        self.host = host
        self.port = port
        self._server = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmbeddedS3:
        from moto.server import ThreadedMotoServer

        quiet_request_logs()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.create_bucket(self.bucket)
        log.info("embedded S3 (moto) at %s, bucket %s", self.endpoint_url, self.bucket)
        return self

    def create_bucket(self, bucket: str) -> None:
        import boto3

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="embedded",
            aws_secret_access_key="embedded",
        )
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ForwardingProxy:
    """An HTTP proxy on loopback in front of ``upstream`` that counts request bytes by method.

    ``fail_after_forward(method, path) -> bool`` is asked once per request; the first time it
    says yes, the request is forwarded, its answer dropped, and the client gets a 503 instead.
    """

    def __init__(
        self,
        upstream: str,
        fail_after_forward: Callable[[str, str], bool] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.fail_after_forward = fail_after_forward
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
