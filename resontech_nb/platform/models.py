"""The platform API's request and response bodies as pydantic models.

These classes are the single definition of the API's data: ``app.py`` validates every request
body with them and shapes every JSON answer through them, and ``openapi.py`` turns the same
classes into the schema's ``components/schemas``. Request models are strict (no type coercion)
and forbid unknown fields, so what the schema calls valid is exactly what the server accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..records.status import ABORTED, FAILED, FINISHED, QUEUED, RUNNING, SUBMITTED

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{8,200}$"
MAX_OBJECT_BYTES = 5 * 1024**3  # one presigned PUT: S3's single-request limit

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

Status = Literal[QUEUED, SUBMITTED, RUNNING, FINISHED, FAILED, ABORTED]  # type: ignore[valid-type]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Request):
    """Email and password; answered with a bearer token."""

    email: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class UploadObject(_Request):
    """One file the client wants in its own prefix: its sha256 and size."""

    sha256: Sha256
    size: int = Field(ge=0, le=MAX_OBJECT_BYTES, description="bytes (at most 5 GiB: one presigned PUT)")

    @field_validator("size", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        """JSON Schema's integer includes 5.0; strict pydantic alone would refuse it."""
        return int(value) if isinstance(value, float) and value.is_integer() else value


class UploadRequest(_Request):
    objects: list[UploadObject] = Field(min_length=1, max_length=512)


class UploadTicket(_Response):
    """Where one object stands: already in the caller's prefix, or how to PUT it there."""

    sha256: str
    size: int
    key: str = Field(description="the object's key, under the caller's own prefix")
    present: bool = Field(description="true: already uploaded with this sha256 and size; nothing to send")
    url: str | None = Field(description="presigned PUT URL for this key alone (null when present)")
    headers: dict[str, str] = Field(description="headers the PUT must carry as they are (signed into the URL)")
    expires_at: float | None = Field(description="when the URL stops working, seconds since the epoch")


class UploadPlan(_Response):
    objects: list[UploadTicket]


class JobSpec(_Request):
    """A job whose ZIP and shards the caller uploaded beforehand (``POST /api/v1/uploads``), named by sha256."""

    name: Name = Field(description="job name: 1-64 letters, digits, '_', '.' or '-'")
    job_sha256: Sha256 = Field(description="sha256 of the job folder's ZIP, uploaded by this account")
    shards: dict[Name, Sha256] = Field(
        min_length=1, max_length=256, description="site name -> sha256 of its shard ZIP, uploaded by this account"
    )
    num_rounds: int = Field(ge=1, le=10_000)
    min_clients: int | None = Field(default=None, ge=1, le=256)
    class_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    training: dict[str, Any] | None = Field(default=None, description="the TrainingConfig fields, for the record")

    @field_validator("num_rounds", "min_clients", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        """JSON Schema's integer includes 5.0; strict pydantic alone would refuse it."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class Token(_Response):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: float = Field(description="seconds since the epoch")
    email: str


class JobInfo(_Response):
    id: str
    name: str
    status: Status
    error: str | None
    num_rounds: int
    sites: list[str]
    created_at: float
    updated_at: float
    queue_position: int | None = Field(default=None, description="1 = next to start; set while QUEUED")
    rounds_done: int | None = Field(default=None, description="finished rounds (on the single-job route)")


class JobList(_Response):
    jobs: list[JobInfo]


class Round(BaseModel):
    """One finished round: see ``resontech_nb.records.rounds.RoundRecord`` for every field."""

    model_config = ConfigDict(extra="allow")
    round: int
    num_rounds: int | None = None
    global_loss: float | None = None
    clients: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Rounds(_Response):
    rounds: list[Round]


class SiteCounts(BaseModel):
    """One site's counts from the statistics job (``jobcode/rt_statistics.py``): never a row; a count the site
    withheld (below the job's ``min_count``) is null. Only these fields leave the platform (others are dropped)."""

    model_config = ConfigDict(extra="ignore")
    train: int | None = None
    val: int | None = None
    test: int | None = None
    multi_label: bool = False
    labels: dict[str, int | None] = Field(default_factory=dict, description="class -> rows")
    image_sizes: dict[str, int | None] = Field(default_factory=dict, description="'WxH' -> sampled entries")
    image_modes: dict[str, int | None] = Field(default_factory=dict, description="image mode -> sampled entries")


class Evaluation(_Response):
    best_round: int | None = Field(description="the round whose global model scored best on select_metric")
    cross_site: dict[str, dict[str, dict[str, Any]]] = Field(description="model -> site -> metrics")
    data_summary: dict[str, SiteCounts] | None = Field(
        default=None, description="a statistics job's counts: site -> counts (absent for a training job)"
    )
    data_summary_errors: dict[str, str] | None = Field(
        default=None, description="a statistics job's sites that could not count: site -> why"
    )


class Health(_Response):
    status: Literal["ok"]


class Error(_Response):
    error: str = Field(description="what went wrong and how to fix it")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (Token, UploadPlan, JobInfo, JobList, Rounds, Evaluation, Health, Error)
REQUEST_MODELS: tuple[type[BaseModel], ...] = (LoginRequest, UploadRequest, JobSpec)
