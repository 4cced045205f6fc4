"""The three configuration classes of the platform's guide, with validation.

Values come, in rising order of precedence, from the defaults, the user config file
(``~/.config/resontech_nb/config.toml`` or ``$RESONTECH_NB_CONFIG``), environment
variables (``RESONTECH_<FIELD>``, e.g. ``RESONTECH_BATCH_SIZE``) and explicit arguments.
Strings are coerced to the field's type, so the same path serves ``%fl_config`` and env vars (the file
and the coercion: ``config_sources``).

The password is kept out of ``repr``, ``to_dict`` and every saved form.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError
from .sources import coerce, config_file_path, read_config_section

log = logging.getLogger(__name__)

SECRET_FIELDS = frozenset({"password"})
DEFAULT_SFTP_KEY = "~/.ssh/id_ed25519"
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

C = TypeVar("C", bound="_Config")


@dataclass
class _Config:
    """Shared machinery: coercion, validation, loading from file and environment."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = {f.name: f.type for f in fields(self)}
        for f in fields(self):
            kind = {"int": int, "float": float, "str": str, "bool": bool}[str(hints[f.name])]
            object.__setattr__(self, f.name, coerce(type(self).__name__, f.name, kind, getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ConfigError naming the fix when a value is out of range."""

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"{type(self).__name__}: {message}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def load(cls: type[C], **overrides: Any) -> C:
        """Defaults, then the user config file, then ``RESONTECH_*`` env vars, then ``overrides``."""
        values: dict[str, Any] = {}
        names = set(cls.field_names())
        for key, value in read_config_section(cls.section).items():
            if key not in names:
                raise ConfigError(
                    f"unknown key {key!r} in [{cls.section}] of {config_file_path()}; "
                    f"known keys: {', '.join(sorted(names))}"
                )
            values[key] = value
        for name in names:
            env = os.environ.get(f"RESONTECH_{name.upper()}")
            if env is not None and env != "":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (and validated)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ConfigError(
                f"unknown {type(self).__name__} field(s) {sorted(unknown)}; known: {self.field_names()}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field but secrets: safe to write into a job folder, S3 or a notebook."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_FIELDS}

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "'***'" if value else "''"
            else:
                value = repr(value)
            parts.append(f"{f.name}={value}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(repr=False)
class ResonTechConfig(_Config):
    """Connection to the ResonTech platform (and, for ``target='nvflare'``, to a deployment)."""

    section: ClassVar[str] = "resontech"

    base_url: str = ""
    email: str = ""
    password: str = field(default="", repr=False)
    sftp_key_file: str = DEFAULT_SFTP_KEY
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = "resontech_nb"
    nvflare_startup_kit: str = ""
    nvflare_username: str = "admin@nvidia.com"

    def validate(self) -> None:
        if self.base_url:
            self._require(
                self.base_url.startswith(("http://", "https://")),
                f"base_url must start with http:// or https://, got {self.base_url!r}",
            )
            object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.email:
            self._require("@" in self.email, f"email {self.email!r} is not an email address")
        if self.s3_endpoint_url:
            self._require(
                self.s3_endpoint_url.startswith(("http://", "https://")),
                f"s3_endpoint_url must start with http:// or https://, got {self.s3_endpoint_url!r}",
            )
        if self.s3_bucket:
            self._require(
                re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.s3_bucket) is not None,
                f"s3_bucket {self.s3_bucket!r} is not a valid S3 bucket name "
                "(3-63 lowercase letters, digits, '.' or '-')",
            )
        if self.sftp_key_file != DEFAULT_SFTP_KEY:
            warnings.warn(
                "sftp_key_file is accepted but not used: SFTP is deprecated and files go through S3 "
                "(set s3_bucket and s3_endpoint_url instead)",
                DeprecationWarning,
                stacklevel=4,
            )

    def require_platform(self) -> None:
        """Raise ConfigError unless everything the resontech target needs is set."""
        missing = [n for n in ("base_url", "email", "s3_bucket") if not getattr(self, n)]
        if missing:
            raise ConfigError(
                f"the resontech target needs {', '.join(missing)}: set them with "
                f"%fl_config {' '.join(m + '=...' for m in missing)} or RESONTECH_{missing[0].upper()}"
            )


@dataclass(repr=False)
class TrainingConfig(_Config):
    """Hyperparameters handed to ``fl_train_model`` as ``payload['hyperparams']``."""

    section: ClassVar[str] = "training"

    num_classes: int = 0
    local_epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 0.001
    img_size: int = 224
    manifest_file: str = "manifest.ndjson"
    val_fraction: float = 0.2

    def validate(self) -> None:
        self._require(self.num_classes >= 0, "num_classes must be >= 0 (0 infers it from the manifests)")
        self._require(self.local_epochs >= 1, f"local_epochs must be >= 1, got {self.local_epochs}")
        self._require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        self._require(
            0 < self.learning_rate < 10, f"learning_rate must be > 0 (e.g. 0.001), got {self.learning_rate}"
        )
        self._require(4 <= self.img_size <= 4096, f"img_size must be between 4 and 4096, got {self.img_size}")
        self._require(
            bool(self.manifest_file) and "/" not in self.manifest_file and "\\" not in self.manifest_file,
            f"manifest_file must be a file name at the shard's root, got {self.manifest_file!r}",
        )
        self._require(
            0 <= self.val_fraction < 1,
            f"val_fraction must be at least 0 and below 1 (e.g. 0.2), got {self.val_fraction}",
        )


@dataclass(repr=False)
class FederationConfig(_Config):
    """How the NVFlare server runs the rounds."""

    section: ClassVar[str] = "federation"

    num_rounds: int = 5
    min_clients: int = 1
    wait_time_after_min_received: int = 10
    heart_beat_timeout: int = 600
    job_name: str = "rt_job"
    train_timeout: int = 6000
    select_metric: str = ""
    cross_site_eval: bool = False
    # How often an idle site asks the server for work, and how often the server checks a round's tasks.
    # Lower means shorter rounds (NVFlare's defaults, 2 s and 0.5 s, are most of a small model's round)
    # at the price of more requests while idle: 0.1 s is ten small requests a second per site.
    task_request_interval: float = 0.1
    task_check_period: float = 0.02
    # NVFlare's server runs gc.collect + malloc_trim every N rounds (its default is 1): that takes 0.1 s or more a
    # round, often enough to make a site's request for the next round come too early, and in the simulator a
    # too-early request waits 0.5 s. 0 leaves it to Python's own collector; N > 0 hands freed memory back to
    # the OS every N rounds, for long runs of big models where the server's resident size matters.
    memory_gc_rounds: int = 0
    # Weights travel in pieces of this many MB. NVFlare's default, 2 MB, makes a 180 MB model 90 requests per hop
    # and its transfer twice as slow; each piece costs about 20 ms here. A few pieces are in memory at a time, whole
    # (measured at 45 M parameters, 2 sites: 8 MB 2.3 s a round, site peak 0.72 GB; 16 MB 1.8 s, 0.76 GB; 32 MB
    # 1.75 s, 0.83 GB). On a slow link one piece must arrive within NVFlare's per-request timeout (600 s).
    download_chunk_mb: float = 16.0
    # The algorithm (see resontech_nb/algorithms.py) and the privacy filters each site applies to its update.
    algorithm: str = "fedavg"
    fedprox_mu: float = 0.01
    fedopt_optimizer: str = "sgd"
    fedopt_lr: float = 0.0  # 0: the optimizer's usual server rate (1.0 for sgd, 0.01 for adam)
    fedopt_momentum: float = 0.6
    privacy: str = ""

    def validate(self) -> None:
        self._require(self.num_rounds >= 1, f"num_rounds must be >= 1, got {self.num_rounds}")
        self._require(self.min_clients >= 1, f"min_clients must be >= 1, got {self.min_clients}")
        self._require(
            self.wait_time_after_min_received >= 0,
            f"wait_time_after_min_received must be >= 0 seconds, got {self.wait_time_after_min_received}",
        )
        self._require(
            self.heart_beat_timeout >= 1, f"heart_beat_timeout must be >= 1 second, got {self.heart_beat_timeout}"
        )
        self._require(
            _JOB_NAME.match(self.job_name) is not None,
            f"job_name {self.job_name!r} must be 1-64 letters, digits, '_', '.' or '-'",
        )
        self._require(
            self.train_timeout >= 1,
            f"train_timeout must be >= 1 second (a site that does not answer a round within it fails that round), "
            f"got {self.train_timeout}",
        )
        self._require(
            self.select_metric == "" or re.fullmatch(r"[A-Za-z_][\w.-]{0,63}", self.select_metric) is not None,
            f"select_metric {self.select_metric!r} must be a validation metric name such as 'accuracy' or 'loss' "
            "(or empty for no model selection)",
        )

        self._require(
            0 < self.task_request_interval <= 60,
            f"task_request_interval must be above 0 and at most 60 s (e.g. 0.1), got {self.task_request_interval}",
        )
        self._require(
            0 < self.task_check_period <= 10,
            f"task_check_period must be above 0 and at most 10 seconds (e.g. 0.02), got {self.task_check_period}",
        )
        self._require(
            self.memory_gc_rounds >= 0, f"memory_gc_rounds must be >= 0 (0 = off), got {self.memory_gc_rounds}"
        )
        self._require(
            0 < self.download_chunk_mb <= 1024,
            f"download_chunk_mb must be above 0 and at most 1024 (e.g. 32), got {self.download_chunk_mb}",
        )
        from ..algorithms import algorithm_problem
        from ..privacy import privacy_problem

        self._require(not (problem := algorithm_problem(self)), problem)
        self._require(not (problem := privacy_problem(self.privacy)), problem)
        self._require(
            not (self.privacy and self.cross_site_eval),
            "cross_site_eval sends each site's whole local model to the other sites, which the privacy filters "
            f"({self.privacy!r}) are there to prevent: use one or the other",
        )

    @property
    def select_higher(self) -> bool:
        """Whether a higher ``select_metric`` is better (lower when the name ends in ``loss``)."""
        return not self.select_metric.lower().endswith("loss")


def as_config(cls: type[C], value: C | Mapping[str, Any] | None) -> C:
    """Accept a config object, a dict of its fields, or None (load defaults/file/env)."""
    if value is None:
        return cls.load()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.load(**dict(value))
    raise ConfigError(f"expected {cls.__name__} or a dict of its fields, got {type(value).__name__}")
