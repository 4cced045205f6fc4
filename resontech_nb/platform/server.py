"""``PlatformServer``: the REST API on waitress (a production WSGI server), in a thread or in the foreground.

One process serves the API with ``threads`` worker threads and owns the job runner, its queue
and its scheduler; the jobs themselves run in NVFlare processes of their own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..config.settings import ResonTechConfig
from .app import create_app
from .runner import JobRunner
from .sandbox import Sandbox, SandboxError, SandboxLimits
from .store import TOKEN_TTL_S, Store
from .throttle import LoginThrottle, ThrottleLimits

log = logging.getLogger(__name__)

SERVER_IDENT = "resontech-platform"


class PlatformServer:
    """The reference platform on ``host:port`` (port 0 picks a free one), state under ``data_dir``.

    Job files are read from ``bucket`` at ``s3_endpoint`` with the server's own S3 credentials
    (boto3's usual chain). ``max_running`` jobs run at once (default: the CPU count), the rest
    wait QUEUED. Tokens live ``token_ttl_s`` seconds; ``login_limits`` sets the login throttling.

    Every job on the simulator runs in a ``Sandbox`` with ``limits``. Where bubblewrap does not work the
    server refuses to start, unless ``unsafe_single_user``: then jobs run unconfined, with the server's
    own rights (fit only for one user running their own code). Jobs sent to an NVFlare deployment keep
    NVFlare's own authorisation.
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
        threads: int = 8,
        max_running: int | None = None,
        token_ttl_s: float = TOKEN_TTL_S,
        login_limits: ThrottleLimits | None = None,
        limits: SandboxLimits | None = None,
        unsafe_single_user: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.threads = threads
        # Where jobs run: the NVFlare simulator, or the deployment whose admin startup kit is given.
        self.s3 = ResonTechConfig(
            s3_bucket=bucket,
            s3_endpoint_url=s3_endpoint,
            s3_region=s3_region,
            nvflare_startup_kit=nvflare_startup_kit,
            nvflare_username=nvflare_username,
        )
        self.sandbox: Sandbox | None = None
        if not nvflare_startup_kit:
            why = Sandbox.available()
            if why is None:
                self.sandbox = Sandbox(limits, hidden=[self.data_dir])
            elif not unsafe_single_user:
                raise SandboxError(
                    f"cannot sandbox the users' job code: {why}; or, for one user running only their own code, "
                    "start with --unsafe-single-user (jobs then run with the server's rights)"
                )
            else:
                log.warning("UNSAFE single-user mode: jobs run unsandboxed, with the server's rights (%s)", why)
        elif unsafe_single_user:
            log.info("--unsafe-single-user has no effect with an NVFlare deployment (NVFlare authorises its jobs)")
        self.store = Store(self.data_dir / "platform.sqlite3", token_ttl_s=token_ttl_s)
        self.runner = JobRunner(self.store, self.data_dir, self.s3, max_running=max_running, sandbox=self.sandbox)
        self.app = create_app(self.store, self.runner, LoginThrottle(login_limits))
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_user(self, email: str, password: str) -> None:
        self.store.add_user(email, password)

    def bind(self) -> PlatformServer:
        """Bind the port (``self.port`` then holds the real one), resume unfinished jobs, start the queue."""
        from waitress import create_server

        if self._server is not None:
            return self
        self._server = create_server(
            self.app,
            host=self.host,
            port=self.port,
            threads=self.threads,
            ident=SERVER_IDENT,
            clear_untrusted_proxy_headers=True,
            channel_timeout=120,
        )
        self.port = self._server.effective_port
        self.runner.resume()
        self.runner.start_scheduler()
        return self

    def start(self) -> PlatformServer:
        """Serve in a background thread; returns once the port is bound."""
        self.bind()
        self._thread = threading.Thread(target=self._server.run, name="platform-http", daemon=True)
        self._thread.start()
        log.info("platform serving at %s (data in %s)", self.url, self.data_dir)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""
        self.bind()
        log.info("platform serving at %s (data in %s, %d threads)", self.url, self.data_dir, self.threads)
        try:
            self._server.run()
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def _close(self) -> None:
        """Stop the scheduler, then waitress (its sockets and worker threads).

        When waitress runs in its own thread, the sockets are closed from inside its loop (through
        its trigger), never under a ``select`` running in that thread.
        """
        self.runner.stop_scheduler()
        server, self._server = self._server, None
        if server is None:
            return
        server.task_dispatcher.shutdown()
        if self._thread is not None and self._thread.is_alive():
            server.trigger.pull_trigger(lambda: _close_all(server))
            self._thread.join(timeout=10)
        else:
            _close_all(server)
        self._thread = None

    def stop(self) -> None:
        """Stop serving. Jobs already running on NVFlare keep running (their processes are detached)."""
        self._close()
        self.runner.join(timeout=30)
        self.store.close()

    def __enter__(self) -> PlatformServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _close_all(server: object) -> None:
    """Close waitress's listening socket and every open connection, which ends its loop."""
    from waitress import wasyncore

    wasyncore.close_all(server._map)  # type: ignore[attr-defined]
