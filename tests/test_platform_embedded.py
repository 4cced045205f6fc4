"""``resontech-nb serve --embedded-s3``: the platform with its own SeaweedFS, as a user starts it.

The object store is persistent: an object uploaded before a restart (clean or SIGKILL) is there
after it, byte for byte. The S3 keys are generated, kept private, and never printed by ``serve``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from resontech_nb.config.settings import ResonTechConfig
from resontech_nb.targets.nvflare.poc_project import free_port
from resontech_nb.targets.processes import processes_using
from resontech_nb.targets.resontech.storage import S3Storage, sha256_file

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EMAIL, PASSWORD = "gina@example.com", "gina-Secret-6620"



def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return dict(env, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", GINA_PASSWORD=PASSWORD)


class Serve:
    """``resontech-nb serve --embedded-s3`` as a subprocess, with its output in a log file."""

    def __init__(self, data: Path, port: int, s3_port: int, log: Path) -> None:
        self.data, self.port, self.s3_port, self.log = data, port, s3_port, log

    def start(self) -> Serve:
        command = [sys.executable, "-m", "resontech_nb.cli", "serve", "--embedded-s3", "--port", str(self.port)]
        command += ["--s3-port", str(self.s3_port), "--data", str(self.data), "--add-user", f"{EMAIL}:GINA_PASSWORD"]
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=cli_env())
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not come up: {self.log.read_text()}")
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self._log.close()


def s3_keys(data: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "resontech_nb.cli", "s3-env", "--data", str(data)],
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in out.splitlines())


def weed_processes(data: Path) -> list:
    return [p for p in processes_using(data / "s3" / "weed") if "mini" in p.cmdline()]


def test_objects_survive_restarts_and_a_kill(tmp_path, monkeypatch):
    data, log = tmp_path / "platform", tmp_path / "serve.log"
    server = Serve(data, free_port(), free_port(), log).start()
    try:
        printed = log.read_text()
        endpoint = re.search(r"point at (\S+) \(bucket resontech-nb\)", printed).group(1)  # the upload URLs' store
        assert "s3_bucket" not in printed and "Notebook users need no S3 keys" in printed
        assert endpoint == f"http://127.0.0.1:{server.s3_port}"
        assert requests.get(f"{server.url}/health", timeout=5).headers["Server"] == "resontech-platform"

        keys = s3_keys(data)  # the host's own keys (for its tools: here, to check the objects survive)
        assert set(keys) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} and len(keys["AWS_SECRET_ACCESS_KEY"]) >= 30
        assert (data / "s3" / "s3-credentials.json").stat().st_mode & 0o077 == 0
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        storage = S3Storage(ResonTechConfig(s3_bucket="resontech-nb", s3_endpoint_url=endpoint, s3_prefix="t"))
        payload = tmp_path / "shard.zip"
        payload.write_bytes(os.urandom(300_000))
        blob = storage.upload_file(payload)

        server.stop()  # a clean stop also stops its S3 server
        assert weed_processes(data) == []
        server = Serve(data, server.port, server.s3_port, log).start()
        first = storage.download(blob.key, tmp_path / "after-restart.zip")
        assert sha256_file(first) == sha256_file(payload) == blob.sha256

        server.stop(signal.SIGKILL)  # a crash leaves SeaweedFS running; the next start replaces it
        assert len(weed_processes(data)) == 1
        server = Serve(data, server.port, server.s3_port, log).start()
        assert len(weed_processes(data)) == 1
        second = storage.download(blob.key, tmp_path / "after-kill.zip")
        assert sha256_file(second) == blob.sha256
        assert s3_keys(data) == keys  # the same keys across restarts
    finally:
        server.stop()
        for proc in weed_processes(data):
            proc.kill()
    output = log.read_bytes()
    assert keys["AWS_SECRET_ACCESS_KEY"].encode() not in output
    assert PASSWORD.encode() not in output
