"""The three configuration classes of the platform's guide: ``ResonTechConfig``, ``TrainingConfig``,
``FederationConfig``.

Each field is declared once, with ``setting(default, help, flag=..., ok=..., problem=...)``: its type, default,
help text, ``%fl_submit`` flag and check. An algorithm's own settings come from its unit in
``resontech_nb/algorithms/``. See ``base.py`` for where values come from.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .. import algorithms
from ..errors import ConfigError
from ..fields import declare, setting
from ..privacy import privacy_problem
from ..tracking import tracking_problem
from .base import SECRET_FIELDS, Config

LR_SCHEDULES = ("constant", "cosine")  # the default loop's (jobcode/rt_default_train.py), the same names

__all__ = ["SECRET_FIELDS", "FederationConfig", "ResonTechConfig", "TrainingConfig", "as_config"]

DEFAULT_SFTP_KEY = "~/.ssh/id_ed25519"
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_METRIC = re.compile(r"[A-Za-z_][\w.-]{0,63}")


_URL_PROBLEM = "must start with http:// or https://, got {value!r}"


def _url(value: str) -> bool:
    return not value or value.startswith(("http://", "https://"))


C = TypeVar("C", bound=Config)


@dataclass(repr=False)
class ResonTechConfig(Config):
    """Connection to the ResonTech platform (and, for ``target='nvflare'``, to a deployment)."""

    section: ClassVar[str] = "resontech"

    base_url: str = setting("", "REST API base URL of the ResonTech platform", ok=_url, problem=_URL_PROBLEM)
    email: str = setting(
        "", "Account email on the platform", ok=lambda v: not v or "@" in v, problem="{value!r} is not an email address"
    )
    password: str = setting("", "Account password (only %fl_login sets it; never shown or saved)")
    sftp_key_file: str = setting(DEFAULT_SFTP_KEY, "Legacy SFTP key (deprecated, unused: S3 is used)")
    s3_bucket: str = setting(
        "",
        "S3 bucket (unused by target resontech: its platform chooses)",
        ok=lambda v: not v or _BUCKET.fullmatch(v) is not None,
        problem="{value!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')",
    )
    s3_endpoint_url: str = setting(
        "",
        "S3 endpoint URL (unused by target resontech: its platform chooses)",
        ok=_url,
        problem=_URL_PROBLEM,
    )
    s3_region: str = setting("us-east-1", "S3 region (for tools holding their own S3 keys)")
    s3_prefix: str = setting("resontech_nb", "Key prefix in the bucket (for tools holding their own S3 keys)")
    nvflare_startup_kit: str = setting("", "Admin startup kit folder for target nvflare")
    nvflare_username: str = setting("admin@nvidia.com", "Admin user name for target nvflare")

    def validate(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.sftp_key_file != DEFAULT_SFTP_KEY:
            warnings.warn(
                "sftp_key_file is accepted but not used: SFTP is deprecated and files go through S3 "
                "(set s3_bucket and s3_endpoint_url instead)",
                DeprecationWarning,
                stacklevel=4,
            )

    def require_platform(self) -> None:
        """Raise ConfigError unless everything the resontech target needs is set."""
        missing = [n for n in ("base_url", "email") if not getattr(self, n)]
        if missing:
            raise ConfigError(
                f"the resontech target needs {', '.join(missing)}: set them with "
                f"%fl_config {' '.join(m + '=...' for m in missing)} or RESONTECH_{missing[0].upper()}"
            )


@dataclass(repr=False)
class TrainingConfig(Config):
    """Hyperparameters handed to ``fl_train_model`` as ``payload['hyperparams']``."""

    section: ClassVar[str] = "training"

    num_classes: int = setting(
        0,
        "Output classes (0 infers it from the manifests)",
        flag=True,
        ok=lambda v: v >= 0,
        problem="must be >= 0 (0 infers it from the manifests)",
    )
    local_epochs: int = setting(
        2, "Local training epochs per FL round", flag="epochs", ok=lambda v: v >= 1, problem="must be >= 1, got {value}"
    )
    batch_size: int = setting(
        32, "Mini-batch size", flag=True, ok=lambda v: v >= 1, problem="must be >= 1, got {value}"
    )
    learning_rate: float = setting(
        0.001,
        "Optimizer learning rate",
        flag="lr",
        ok=lambda v: 0 < v < 10,
        problem="must be > 0 (e.g. 0.001), got {value}",
    )
    img_size: int = setting(
        224,
        "Input image size (square)",
        flag=True,
        ok=lambda v: 4 <= v <= 4096,
        problem="must be between 4 and 4096, got {value}",
    )
    manifest_file: str = setting(
        "manifest.ndjson",
        "Manifest file name inside each shard ZIP",
        ok=lambda v: bool(v) and "/" not in v and "\\" not in v,
        problem="must be a file name at the shard's root, got {value!r}",
    )
    val_fraction: float = setting(
        0.2,
        "Share of an unmarked shard the default loop holds out for validation",
        ok=lambda v: 0 <= v < 1,
        problem="must be at least 0 and below 1 (e.g. 0.2), got {value}",
    )
    # 0 by default, like any fixed seed: the same data, model and settings give the same global weights (bit for bit
    # on CPU, on the local target); change it to see how much a result owes to chance.
    seed: int = setting(
        0,
        "Seed of the initial weights, data order and the default loop's randomness",
        flag=True,
        ok=lambda v: 0 <= v < 2**32,
        problem="must be between 0 and 2**32 - 1, got {value}",
    )
    # The learning rate over the whole job, not per round: every site is at the same point of one curve in the
    # same round (its step counted from the round, the local epochs and the batches). "cosine" falls from
    # learning_rate to a tenth of it by the last step of the last round; "constant" keeps it.
    lr_schedule: str = setting(
        "constant",
        "Learning rate over the job: constant, or cosine down to lr/10",
        flag=True,
        ok=lambda v: v in LR_SCHEDULES,
        problem="must be one of " + ", ".join(LR_SCHEDULES) + ", got {value!r}",
    )
    # Label-skewed sites (each holding a few classes) pull the model towards their own classes. With this on, the
    # default loop adds log(the site's own label frequencies) to the logits in its training loss (logit adjustment,
    # as FedLC and Balanced Softmax do): a site's training no longer rewards favouring its own classes, the model
    # it returns is scored as usual. Single-label data only. It also balances classes a data set is short of
    # everywhere (the model then favours no class for being common): leave it off when that prior is wanted.
    balance_labels: bool = setting(
        False, "Loss corrected for a site's own label frequencies (skewed sites)", flag=True
    )
    # The default loop decodes and resizes each image once per job and keeps the uint8 pixels: this many MB per site
    # in memory (512 MB: 170,000 images at 32 px RGB, 3,400 at 224 px), the rest in a memory-mapped file in the
    # site's workspace, removed when the site ends. 0 decodes every image again in every epoch.
    cache_mb: float = setting(
        512.0,
        "MB of decoded images a site keeps in memory (0 = decode every epoch)",
        ok=lambda v: v >= 0,
        problem="must be >= 0 MB (0 decodes every image in every epoch), got {value}",
    )


@dataclass(repr=False)
class FederationConfig(Config):
    """How the NVFlare server runs the rounds."""

    section: ClassVar[str] = "federation"

    num_rounds: int = setting(
        5, "Total FL training rounds", flag="rounds", ok=lambda v: v >= 1, problem="must be >= 1, got {value}"
    )
    min_clients: int = setting(
        1, "Minimum clients required per round", flag=True, ok=lambda v: v >= 1, problem="must be >= 1, got {value}"
    )
    wait_time_after_min_received: int = setting(
        10,
        "Seconds to wait after min clients respond",
        ok=lambda v: v >= 0,
        problem="must be >= 0 seconds, got {value}",
    )
    heart_beat_timeout: int = setting(
        600, "Client heartbeat timeout in seconds", ok=lambda v: v >= 1, problem="must be >= 1 second, got {value}"
    )
    job_name: str = setting(
        "rt_job",
        "Name stored in the job's metadata",
        flag=True,
        ok=lambda v: _JOB_NAME.match(v) is not None,
        problem="{value!r} must be 1-64 letters, digits, '_', '.' or '-'",
    )
    train_timeout: int = setting(
        6000,
        "Seconds a site may take for a round before it is marked failed",
        flag=True,
        ok=lambda v: v >= 1,
        problem="must be >= 1 second (a site that does not answer a round within it fails that round), got {value}",
    )
    select_metric: str = setting(
        "",
        "Validation metric that picks the best global model ('' = off)",
        flag=True,
        ok=lambda v: v == "" or _METRIC.fullmatch(v) is not None,
        problem="{value!r} must be a validation metric name such as 'accuracy' or 'loss' (or empty for no model "
        "selection)",
    )
    cross_site_eval: bool = setting(
        False, "Evaluate the final and each site's model on every site's data", flag="cross_site"
    )
    # How often an idle site asks the server for work, and how often the server checks a round's tasks.
    # Lower means shorter rounds (NVFlare's defaults, 2 s and 0.5 s, are most of a small model's round)
    # at the price of more requests while idle: 0.1 s is ten small requests a second per site.
    task_request_interval: float = setting(
        0.1,
        "Seconds between an idle site's requests for work",
        ok=lambda v: 0 < v <= 60,
        problem="must be above 0 and at most 60 s (e.g. 0.1), got {value}",
    )
    task_check_period: float = setting(
        0.02,
        "Seconds between the server's checks of a round's tasks",
        ok=lambda v: 0 < v <= 10,
        problem="must be above 0 and at most 10 seconds (e.g. 0.02), got {value}",
    )
    # NVFlare's server runs gc.collect + malloc_trim every N rounds (its default is 1): that takes 0.1 s or more a
    # round, often enough to make a site's request for the next round come too early, and in the simulator a
    # too-early request waits 0.5 s. 0 leaves it to Python's own collector; N > 0 hands freed memory back to
    # the OS every N rounds, for long runs of big models where the server's resident size matters.
    memory_gc_rounds: int = setting(
        0,
        "Rounds between the server's memory clean-ups (0 = off)",
        ok=lambda v: v >= 0,
        problem="must be >= 0 (0 = off), got {value}",
    )
    # Weights travel in pieces of this many MB. NVFlare's default, 2 MB, makes a 180 MB model 90 requests per hop
    # and its transfer twice as slow; each piece costs about 20 ms here. A few pieces are in memory at a time, whole
    # (measured at 45 M parameters, 2 sites: 8 MB 2.3 s a round, site peak 0.72 GB; 16 MB 1.8 s, 0.76 GB; 32 MB
    # 1.75 s, 0.83 GB). On a slow link one piece must arrive within NVFlare's per-request timeout (600 s).
    download_chunk_mb: float = setting(
        16.0,
        "MB per piece of the weights sent between server and sites",
        ok=lambda v: 0 < v <= 1024,
        problem="must be above 0 and at most 1024 (e.g. 32), got {value}",
    )
    algorithm: str = setting(
        algorithms.DEFAULT,
        "Federated algorithm: " + ", ".join(algorithms.REGISTRY),
        flag=True,
        ok=lambda v: v in algorithms.REGISTRY,
        problem="{value!r} is unknown; use one of: " + ", ".join(algorithms.REGISTRY),
    )
    # Each algorithm's own settings, declared by its unit in resontech_nb/algorithms/.
    declare(locals(), algorithms.algorithm_settings())
    privacy: str = setting("", "Privacy filters on each site's update, e.g. 'exclude:^fc\\.'", flag=True)
    tracking: str = setting(
        "",
        "Where the run is logged: tensorboard:DIR, mlflow:URI (several: ';')",
        flag=True,
    )  # checked in validate(), with the message of the sink that finds the problem
    tracking_models: bool = setting(False, "Keep the final and best models with the MLflow run", flag=True)

    def validate(self) -> None:
        self._require(not (problem := privacy_problem(self.privacy)), problem)
        self._require(not (problem := tracking_problem(self.tracking)), problem)
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
