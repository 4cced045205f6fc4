"""The ``nvflare`` target: an existing NVFlare deployment, reached through its admin API (FLARE API session).

Configure it with ``ResonTechConfig.nvflare_startup_kit``, the admin's startup kit folder (for a POC:
``<poc workspace>/example_project/prod_00/admin@nvidia.com``, see ``resontech_nb.targets.nvflare.poc``), and
``nvflare_username``. One session is opened per target on first use, shared with the jobs it returns,
reopened when the server dropped it, and closed by ``close()`` or when nothing uses it any more.

What the deployment needs:

- **Custom code rights.** The job ships its code in ``custom/``: the submitting user's role needs
  bring-your-own-code rights on every site (POC's project admin has them).
- **Shards.** The job's shard map holds absolute paths on the machine that built the job, which is
  right for a POC on one machine. On a real deployment each site finds its own shard instead: set
  ``RESONTECH_SHARD=/path/to/shard.zip`` in the site's environment, or give the executor a
  ``data_dir`` argument holding ``<site name>.zip``.

The job it returns, and how its state and results are read, is ``nvflare_job.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ...errors import ConfigError, SubmitError
from ...job.handle import jobs_home
from ..base import BuiltJob, Target
from .admin import AdminLink
from .job import REMOTE_ROUNDS_FILE, NVFlareJob

log = logging.getLogger(__name__)

RECORDER_PATH = "rt_recorder.RoundRecorder"


class NVFlareTarget(Target):
    """Submit to an NVFlare deployment (POC or production) with an admin startup kit."""

    name = "nvflare"

    def __init__(self, config: Any = None, home: str | Path | None = None, connect_timeout: float = 10.0) -> None:
        super().__init__(config)
        self.startup_kit = _startup_kit(self.config.nvflare_startup_kit)
        self.username = self.config.nvflare_username
        self.home = Path(home) if home is not None else jobs_home()
        self.link = AdminLink(self.startup_kit, self.username, connect_timeout)

    def state_dir(self, job_id: str) -> Path:
        return self.home / "nvflare" / job_id

    def submit(self, built: BuiltJob) -> NVFlareJob:
        self._check_clients(built)
        with tempfile.TemporaryDirectory(prefix="rt_submit_") as scratch:
            job_folder = Path(scratch) / built.federation.job_name
            shutil.copytree(built.job_dir, job_folder)
            _record_rounds_readably(job_folder)
            job_id = self._submit_folder(job_folder)
        state = {
            "id": job_id,
            "name": built.federation.job_name,
            "num_rounds": built.federation.num_rounds,
            "sites": sorted(built.shards),
            "startup_kit": str(self.startup_kit),
            "submitted_at": time.time(),
        }
        state_dir = self.state_dir(job_id)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        log.info("NVFlare job %s submitted through %s", job_id, self.startup_kit)
        return NVFlareJob(job_id, self.link, state_dir, state)

    def attach(self, job_id: str) -> NVFlareJob:
        meta = self.link.call(lambda s: s.get_job_meta(job_id))
        state_dir = self.state_dir(job_id)
        state_file = state_dir / "state.json"
        if state_file.is_file():
            state = json.loads(state_file.read_text(encoding="utf-8"))
        else:  # submitted elsewhere: rounds and sites become known from the round records
            state = {"id": job_id, "name": meta.get("name") or job_id, "num_rounds": 0, "sites": []}
        return NVFlareJob(job_id, self.link, state_dir, state)

    def close(self) -> None:
        """Close the FLARE API session (jobs from this target reopen it when they need it)."""
        self.link.close()

    def _submit_folder(self, job_folder: Path) -> str:
        from nvflare.fuel.flare_api.api_spec import InvalidJobDefinition

        try:
            return self.link.call(lambda s: s.submit_job(str(job_folder)), error=SubmitError)
        except InvalidJobDefinition as exc:
            raise SubmitError(f"the NVFlare server refused the job folder: {exc}; rebuild it with build_job") from None

    def _check_clients(self, built: BuiltJob) -> None:
        """Fail now, not after an endless wait in SUBMITTED, when too few clients are connected."""
        info = self.link.call(lambda s: s.get_system_info(), error=SubmitError)
        connected = sorted(c.name for c in info.client_info)
        needed = built.federation.min_clients
        if len(connected) < needed:
            raise SubmitError(
                f"the job needs min_clients={needed} but {len(connected)} client(s) are connected to the NVFlare "
                f"server ({', '.join(connected) or 'none'}): start more clients or lower --min-clients"
            )
        unknown = sorted(set(connected) - set(built.shards))
        if unknown:
            log.warning(
                "clients %s have no shard in the job's shard map: they need RESONTECH_SHARD set on their site",
                unknown,
            )



def _startup_kit(value: str) -> Path:
    if not value:
        raise ConfigError(
            "the nvflare target needs the admin's startup kit folder: set it with "
            "%fl_config nvflare_startup_kit=/path/to/prod_00/admin@nvidia.com (or RESONTECH_NVFLARE_STARTUP_KIT)"
        )
    kit = Path(value).expanduser()
    if not kit.is_dir():
        raise ConfigError(
            f"nvflare_startup_kit {str(kit)!r} is not a folder: set "
            "%fl_config nvflare_startup_kit=... to the admin's startup kit folder (it holds startup/fed_admin.json)"
        )
    if not (kit / "startup" / "fed_admin.json").is_file():
        raise ConfigError(
            f"{kit} is not an admin startup kit (no startup/fed_admin.json): set "
            "%fl_config nvflare_startup_kit=... to the folder of the admin user's kit, e.g. prod_00/admin@nvidia.com"
        )
    return kit.resolve()


def _record_rounds_readably(job_folder: Path) -> None:
    """Have the round recorder write a file name the admin API's ``cat`` command accepts."""
    for config_path in job_folder.glob("*/config/config_fed_server.json"):
        config = json.loads(config_path.read_text(encoding="utf-8"))
        changed = False
        for component in config.get("components", []):
            if component.get("path") == RECORDER_PATH:
                component.setdefault("args", {})["file_name"] = REMOTE_ROUNDS_FILE
                changed = True
        if changed:
            config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
