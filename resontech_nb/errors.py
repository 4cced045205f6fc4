"""One exception hierarchy for the package: catch ``ResonTechError`` for all of them.

Every message names the fix, so a magic can show it as a one-line ``UsageError``.
"""

from __future__ import annotations


class ResonTechError(Exception):
    """Base class of every error raised on purpose by resontech_nb."""


class ConfigError(ResonTechError, ValueError):
    """A configuration value is missing or invalid."""


class CaptureError(ResonTechError):
    """The model class or training function cannot be captured into model_def.py."""


class PreflightError(CaptureError):
    """The captured model failed to instantiate or to run one forward pass."""


class CaptureWarning(UserWarning):
    """Captured code that works but will not behave as intended on the sites (e.g. a global ``device``)."""


class AlgorithmWarning(UserWarning):
    """A job whose algorithm would not act as chosen (e.g. fedprox with a loop that never adds the term)."""


class DataWarning(UserWarning):
    """The data will train, but not as it may seem: mixed image sizes or modes, a site without validation rows,
    a split that had to move rows so that every site gets one."""


class ManifestError(ResonTechError):
    """A shard ZIP or its manifest.ndjson is invalid."""


class JobBuildError(ResonTechError):
    """The NVFlare job folder cannot be built from the given inputs."""


class SubmitError(ResonTechError):
    """A job could not be submitted to its target."""


class JobNotFoundError(ResonTechError, LookupError):
    """No job with this id is known to the target."""


class JobFailedError(ResonTechError):
    """The job ended without a result (failed or aborted)."""


class AuthError(ResonTechError):
    """Login failed or the session is not allowed to do this."""


class PlatformError(ResonTechError):
    """The ResonTech REST API answered with an error."""


class StorageError(ResonTechError):
    """An S3 operation failed (missing bucket, wrong keys, checksum mismatch)."""


class NVFlareError(ResonTechError):
    """The NVFlare server answered a command with an error."""


class DeploymentUnreachableError(NVFlareError, ConnectionError):
    """The NVFlare server does not answer on the address in the startup kit."""


class PocError(ResonTechError):
    """The POC deployment could not be prepared, started or stopped."""
