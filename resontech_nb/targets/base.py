"""The small interface every target implements (``local``, ``nvflare``, ``resontech``).

What runs (the built job folder, ``BuiltJob``) is kept apart from where it runs (a ``Target``),
the way NVFlare's recipes keep a recipe apart from ``SimEnv``/``PocEnv``/``ProdEnv``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config.settings import FederationConfig, ResonTechConfig, TrainingConfig
from ..errors import JobNotFoundError
from ..job.handle import Job

# What every target's job ids look like: a name, a timestamp and a random tail, no path separators.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_job_id(job_id: object) -> str:
    """``job_id`` if it can be a job id; ``JobNotFoundError`` for anything path-like (``../x``, ``/etc``, ``a/b``)."""
    if not isinstance(job_id, str) or _JOB_ID.fullmatch(job_id) is None:
        raise JobNotFoundError(
            f"{job_id!r} is not a job id (ids are letters, digits, '_', '.' and '-', e.g. rt_job-20250101-120000-ab12cd"
            "): copy the id that %fl_submit printed"
        )
    return job_id


@dataclass
class BuiltJob:
    """A job folder ready to run, and what it was built from."""

    job_dir: Path
    shards: dict[str, Path]  # site name -> shard ZIP on this machine
    training: TrainingConfig
    federation: FederationConfig
    class_name: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        return list(self.shards)


class Target(ABC):
    """Where a built job runs. Adding a target: one module here and one line in the registry."""

    name: ClassVar[str]

    def __init__(self, config: ResonTechConfig | None = None) -> None:
        self.config = config if config is not None else ResonTechConfig.load()

    def preflight(self) -> None:
        """Check, before anything is built or uploaded, that this target can take a job (settings, login,
        endpoints); raise the package's error naming the fix. Targets that need nothing keep this no-op."""
        return None

    @classmethod
    def warm_up(cls) -> None:
        """Start ahead what this target's next job needs at its start (in the background; returns at once).
        Targets with nothing to start keep this no-op."""
        return None

    @abstractmethod
    def submit(self, built: BuiltJob) -> Job:
        """Start the job; return its handle without waiting for it to finish."""

    @abstractmethod
    def attach(self, job_id: str) -> Job:
        """A handle on a job submitted earlier (also from another process or kernel)."""
