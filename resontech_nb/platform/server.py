"""``PlatformServer``: the REST API on a real HTTP server, in a thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..config import ResonTechConfig
from .app import create_app
from .loopback import quiet_request_logs
from .runner import JobRunner
from .store import Store

log = logging.getLogger(__name__)


class PlatformServer:
    """The reference platform on ``host:port`` (port 0 picks a free one), state under ``data_dir``.

    Job files are read from ``bucket`` at ``s3_endpoint`` with the server's own S3 credentials
    (boto3's usual chain).
    """

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        s3_endpoint: str = "",
        bucket: str = "",
        s3_region: str = "us-east-1",
        nvflare_startup_kit: str = "",
        nvflare_username: str = "admin@nvidia.com",
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        # Where jobs run: the NVFlare simulator, or the deployment whose admin startup kit is given.
        self.s3 = ResonTechConfig(
            s3_bucket=bucket,
            s3_endpoint_url=s3_endpoint,
            s3_region=s3_region,
            nvflare_startup_kit=nvflare_startup_kit,
            nvflare_username=nvflare_username,
        )
        self.store = Store(self.data_dir / "platform.sqlite3")
        self.runner = JobRunner(self.store, self.data_dir, self.s3)
        self.app = create_app(self.store, self.runner)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_user(self, email: str, password: str) -> None:
        self.store.add_user(email, password)

    def bind(self) -> PlatformServer:
        """Bind the port (``self.port`` then holds the real one) and resume unfinished jobs."""
        from werkzeug.serving import make_server

        if self._server is not None:
            return self
        quiet_request_logs()

        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self.runner.resume()
        return self

    def start(self) -> PlatformServer:
        """Serve in a background thread; returns once the port is bound."""
        self.bind()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        log.info("platform serving at %s (data in %s)", self.url, self.data_dir)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""
        self.bind()
        log.info("platform serving at %s (data in %s)", self.url, self.data_dir)
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()
            self._server = None
            self.store.close()

    def stop(self) -> None:
        """Stop serving. Jobs already running on NVFlare keep running (their processes are detached)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.runner.join(timeout=30)
        self.store.close()
        self._server = None

    def __enter__(self) -> PlatformServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
