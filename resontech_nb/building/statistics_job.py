"""The data-summary job folder: one ``rt_stats`` task on every site, counts back (``jobcode/rt_statistics.py``).

Built like a training job (``meta.json``, the app's two configs, ``custom/`` with the job code it needs), so every
target runs it the way it runs training: no model, no weights, no rounds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config.settings import FederationConfig, TrainingConfig
from ..jobcode import JOBCODE_DIR
from .nvflare_config import APP

STATISTICS_FILES = (  # rt_statistics.py and every job-code module it imports, directly or not
    "rt_statistics.py", "rt_manifest.py", "rt_sample.py", "rt_zip.py", "rt_https.py", "rt_dataset.py",
    "rt_samplecache.py",
)


def build_statistics_job(
    shards: dict[str, Path],
    training: TrainingConfig,
    federation: FederationConfig,
    out: Path,
    *,
    min_count: int = 0,
    sample: int = 64,
) -> Path:
    """Write the statistics job for ``shards`` (``{site: shard path where the site reads it}``) into ``out`` (a new
    folder); return it.

    ``min_count``: each site withholds a count below it (but not zero) before answering; ``sample``: how many
    entries per site are opened for image sizes and modes.
    """
    job_dir = Path(out)
    custom = job_dir / APP / "custom"
    config_dir = job_dir / APP / "config"
    custom.mkdir(parents=True)
    config_dir.mkdir(parents=True)
    for name in STATISTICS_FILES:
        shutil.copyfile(JOBCODE_DIR / name, custom / name)
    site_args = {
        "shards": {site: str(path) for site, path in shards.items()},
        "manifest_file": training.manifest_file,
        "num_classes": training.num_classes,
        "val_fraction": training.val_fraction,
        "sample": sample,
        "min_count": min_count,
    }
    meta = {
        "name": federation.job_name,
        "resource_spec": {},
        "min_clients": len(shards),
        "deploy_map": {APP: ["@ALL"]},
    }
    server = {
        "format_version": 2,
        "workflows": [
            {"id": "rt_stats", "path": "rt_statistics.StatisticsGather", "args": {"timeout": federation.train_timeout}}
        ],
        "components": [],
    }
    client = {
        "format_version": 2,
        "executors": [{"tasks": ["rt_stats"], "executor": {"path": "rt_statistics.SiteStatistics", "args": site_args}}],
        "components": [],
    }
    for path, data in ((job_dir / "meta.json", meta), (config_dir / "config_fed_server.json", server),
                       (config_dir / "config_fed_client.json", client)):
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return job_dir
