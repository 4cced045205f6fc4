"""An NVFlare POC deployment on this machine: one server and N clients, each its own process.

This is how tests and newcomers reach the ``nvflare`` target without a real federation::

    from resontech_nb.targets.nvflare.poc import PocDeployment

    with PocDeployment("/tmp/my_poc", n_clients=2) as poc:
        config = ResonTechConfig(nvflare_startup_kit=str(poc.admin_startup_kit))
        job = submit(spec, shards, target="nvflare", config=config)
        job.wait()

It drives NVFlare's own CLI (``nvflare poc prepare / start / stop``) with ``NVFLARE_POC_WORKSPACE``
pointing at ``workspace``, with three differences from the defaults:

- the server's ports are free ports picked on this machine (not the fixed 8002/8003), so a
  POC never collides with another one or with anything else listening;
- the server listens on loopback only (``localhost``), as do the clients' internal listeners;
- ``prepare`` does not register the POC's startup kits in ``~/.nvflare`` (pass
  ``register_startup_kits=True`` to get the ``nvflare job submit`` CLI working against it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from ...errors import PocError
from ..processes import processes_using, stop_all
from .poc_project import (
    PROJECT_NAME,
    SERVER_NAME,
    free_port_pair,
    listen_on_loopback,
    port_in_use,
    project_yaml,
    server_ports,
)

log = logging.getLogger(__name__)

DEFAULT_ADMIN = "admin@nvidia.com"
_CLI_TIMEOUT = 120.0


def nvflare_cli() -> list[str]:
    """The ``nvflare`` command of the running interpreter's environment."""
    script = Path(sys.executable).with_name("nvflare")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "nvflare.cli"]


class PocDeployment:
    """Prepare, start and stop an NVFlare POC deployment under ``workspace``.

    ``prepare()`` wipes ``workspace`` and provisions it; ``start()`` returns once the server
    answers and every client is connected; ``stop()`` returns once no process of the
    deployment is left. Use it as a context manager to have both done for you.
    """

    def __init__(
        self,
        workspace: str | Path,
        n_clients: int = 2,
        *,
        clients: list[str] | None = None,
        fed_learn_port: int | None = None,
        admin_port: int | None = None,
        username: str = DEFAULT_ADMIN,
        start_timeout: float = 120.0,
        stop_timeout: float = 60.0,
        register_startup_kits: bool = False,
    ) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        if any(ch.isspace() for ch in str(self.workspace)):
            raise PocError(
                f"NVFlare's POC scripts break on spaces in paths: choose a workspace without spaces ({self.workspace})"
            )
        self.clients = list(clients) if clients else [f"site-{i + 1}" for i in range(n_clients)]
        if not self.clients:
            raise PocError("a POC needs at least one client: pass n_clients >= 1")
        self._requested_ports = (fed_learn_port, admin_port)
        self.username = username
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.register_startup_kits = register_startup_kits

    # -- where things are ----------------------------------------------------------
    @property
    def prod_dir(self) -> Path:
        """The provisioned startup kits (the newest ``prod_NN`` folder)."""
        project = self.workspace / PROJECT_NAME
        prods = sorted(project.glob("prod_[0-9]*"), key=lambda p: int(p.name.split("_")[-1]))
        return prods[-1] if prods else project / "prod_00"

    @property
    def admin_startup_kit(self) -> Path:
        """The project admin's startup kit: what ``ResonTechConfig.nvflare_startup_kit`` points at."""
        return self.prod_dir / self.username

    @property
    def server_dir(self) -> Path:
        """The server's workspace (job run folders live under it while a job runs)."""
        return self.prod_dir / SERVER_NAME

    @property
    def ports(self) -> tuple[int, int]:
        """(FL port, admin port) of the prepared server."""
        return server_ports(self.server_dir)

    @property
    def prepared(self) -> bool:
        return (self.admin_startup_kit / "startup" / "fed_admin.json").is_file() and (
            self.server_dir / "startup" / "fed_server.json"
        ).is_file()

    def processes(self) -> list[psutil.Process]:
        """Every process of this deployment (server, clients, their job processes and daemons)."""
        return processes_using(self.workspace)

    @property
    def running(self) -> bool:
        return bool(self.processes())

    # -- life cycle --------------------------------------------------------------
    def prepare(self) -> PocDeployment:
        """Provision a fresh POC under ``workspace`` (deleting what was there)."""
        if self.running:
            raise PocError(f"the POC under {self.workspace} is running: stop it first (PocDeployment.stop())")
        fl_port, admin_port = free_port_pair(*self._requested_ports)
        self.workspace.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rt_poc_") as scratch:
            project_file = Path(scratch) / "project.yml"
            project_file.write_text(project_yaml(self.clients, self.username, fl_port, admin_port), encoding="utf-8")
            env = self._env()
            if not self.register_startup_kits:
                env["HOME"] = scratch  # keep `nvflare poc prepare` out of the user's ~/.nvflare
            self._run_cli(["poc", "prepare", "-i", str(project_file), "--force"], env, what="prepare")
        listen_on_loopback(self.server_dir)
        if not self.prepared:
            raise PocError(f"nvflare poc prepare left no admin startup kit at {self.admin_startup_kit}")
        log.info("POC prepared under %s (ports %s/%s)", self.workspace, fl_port, admin_port)
        return self

    def start(self) -> PocDeployment:
        """Start the server and clients; return once all clients are connected."""
        if not self.prepared:
            self.prepare()
        if self.running:
            self.wait_until_ready()
            return self
        busy = [port for port in self.ports if port_in_use(port)]
        if busy:
            raise PocError(
                f"port(s) {busy} of the POC under {self.workspace} are taken by another program: "
                "call prepare() again to pick free ports"
            )
        started = time.monotonic()
        # Its own session: a notebook interrupt or a test runner's Ctrl-C must not hit the POC's daemons.
        self._run_cli(["poc", "start", "--no-wait"], self._env(), what="start", new_session=True)
        try:
            self.wait_until_ready()
        except PocError:
            self.stop()
            raise
        log.info("POC under %s up in %.1f s", self.workspace, time.monotonic() - started)
        return self

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Wait until the server answers the admin API and lists every client as connected."""
        from .admin import open_session

        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        last = "the server did not answer"
        while time.monotonic() < deadline:
            session = None
            try:
                session = open_session(self.admin_startup_kit, self.username, timeout=2.0)
                while time.monotonic() < deadline:
                    connected = {c.name for c in session.get_system_info().client_info}
                    missing = sorted(set(self.clients) - connected)
                    if not missing:
                        return
                    last = f"clients not connected yet: {', '.join(missing)}"
                    time.sleep(0.5)
            except Exception as exc:  # the server is still starting
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)
            finally:
                if session is not None:
                    with contextlib.suppress(Exception):
                        session.close()
        raise PocError(
            f"the POC under {self.workspace} was not ready within {self.start_timeout:.0f} s ({last}); "
            f"see {self.server_dir / 'log.txt'}"
        )

    def stop(self) -> None:
        """Shut the deployment down and wait until none of its processes is left."""
        if not self.running:
            return
        if self.prepared:
            try:
                self._run_cli(["poc", "stop"], self._env(), what="stop", check=False, timeout=self.stop_timeout)
            except PocError as exc:  # timed out: the process sweep below finishes the job
                log.warning("%s", exc)
        deadline = time.monotonic() + self.stop_timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = self.processes()
        if leftovers:
            log.warning("POC under %s: %d process(es) did not stop; terminating them", self.workspace, len(leftovers))
            _terminate_all(leftovers)
        if self.running:
            raise PocError(
                f"processes of the POC under {self.workspace} are still running: "
                f"{[p.pid for p in self.processes()]}; end them by hand"
            )
        log.info("POC under %s stopped", self.workspace)

    def __enter__(self) -> PocDeployment:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PocDeployment {self.workspace} clients={self.clients} running={self.running}>"

    # -- helpers -------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ, NVFLARE_POC_WORKSPACE=str(self.workspace), PYTHONUNBUFFERED="1")
        env.pop("RESONTECH_PASSWORD", None)  # the deployment never needs it
        # The POC's start scripts run `python3`: make it this environment's interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _run_cli(
        self,
        args: list[str],
        env: dict[str, str],
        *,
        what: str,
        check: bool = True,
        new_session: bool = False,
        timeout: float = _CLI_TIMEOUT,
    ) -> str:
        command = [*nvflare_cli(), *args]
        log.debug("running %s", " ".join(command))
        try:
            done = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=new_session,
            )
        except subprocess.TimeoutExpired:
            raise PocError(f"`nvflare poc {what}` did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise PocError(f"cannot run the nvflare command ({exc}): is nvflare installed?") from None
        output = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0 and check:
            tail = "\n".join(output.strip().splitlines()[-8:])
            raise PocError(f"`nvflare poc {what}` failed (exit {done.returncode}) for {self.workspace}:\n{tail}")
        return output


def _terminate_all(procs: list[psutil.Process]) -> None:
    # The start scripts' watchdog loops restart a server or client that died without a
    # shutdown request, so they go first.
    def is_watchdog(proc: psutil.Process) -> bool:
        try:
            return any(part.endswith("sub_start.sh") for part in proc.cmdline())
        except psutil.Error:
            return False

    for group in ([p for p in procs if is_watchdog(p)], [p for p in procs if not is_watchdog(p)]):
        stop_all(group, grace=5)
        psutil.wait_procs(group, timeout=5)  # until the killed ones are gone too


def cleanup(workspace: str | Path) -> None:
    """Stop whatever runs under ``workspace`` and delete the folder."""
    poc = PocDeployment(workspace)
    poc.stop()
    shutil.rmtree(poc.workspace, ignore_errors=True)
