"""The small interface every target implements (``local``, ``nvflare``, ``resontech``).

What runs (the built job folder, ``BuiltJob``) is kept apart from where it runs (a ``Target``),
the way NVFlare's recipes keep a recipe apart from ``SimEnv``/``PocEnv``/``ProdEnv``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import FederationConfig, ResonTechConfig, TrainingConfig
from ..job import Job


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

    @abstractmethod
    def submit(self, built: BuiltJob) -> Job:
        """Start the job; return its handle without waiting for it to finish."""

    @abstractmethod
    def attach(self, job_id: str) -> Job:
        """A handle on a job submitted earlier (also from another process or kernel)."""
