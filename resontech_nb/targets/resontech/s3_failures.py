"""What an S3 failure means for the user: one StorageError that names the cause and the fix.

botocore raises connection errors, credential errors and ``ClientError``s whose code and HTTP status
say what went wrong; ``storage_error`` turns each into a one-line message naming the endpoint, the
bucket and what to check. Transient server trouble is retried by botocore first (``RETRIES``).
"""

from __future__ import annotations

from typing import Any

from ...errors import StorageError

RETRIES = {"max_attempts": 5, "mode": "standard"}  # retries 500, 502, 503, 504, SlowDown, throttling
SERVER_TROUBLE = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"}


def storage_error(exc: Exception, storage: Any, action: str) -> StorageError:
    """``exc``, raised while trying to ``action`` on ``storage`` (an S3Storage), as a StorageError."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return StorageError(f"cannot reach the S3 endpoint {storage.endpoint}: check s3_endpoint_url and network")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
        )
    code = error_code(exc)
    status = http_status(exc)
    if code in {"NoSuchBucket"} or (status == 404 and action == "open the bucket"):
        return StorageError(
            f"bucket '{storage.bucket}' does not exist at {storage.endpoint}: create it or fix s3_bucket"
        )
    if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}:
        return StorageError(
            f"S3 rejected the access keys at {storage.endpoint} ({code}): "
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if code in {"AccessDenied", "Forbidden"} or status == 403:
        return StorageError(
            f"access denied to bucket '{storage.bucket}' at {storage.endpoint} while trying to {action}: "
            "check the keys and the bucket policy"
        )
    if (status or 0) >= 500 or code in SERVER_TROUBLE or "reached max retries" in str(exc):
        return StorageError(
            f"the S3 server at {storage.endpoint} kept failing while trying to {action} "
            f"({RETRIES['max_attempts']} attempts, last: {code or status or exc}): check that it is healthy, "
            "then submit again (files already uploaded are not sent twice)"
        )
    return StorageError(f"S3 could not {action} in bucket '{storage.bucket}' at {storage.endpoint}: {exc}")


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


def http_status(exc: Exception) -> int | None:
    """The HTTP status of a botocore ClientError (a numeric error code counts too)."""
    response = getattr(exc, "response", None) or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if status is None and error_code(exc).isdigit():
        return int(error_code(exc))
    return status


def checksum_unsupported(exc: Exception) -> bool:
    """Whether the server refused a request only because it does not support the checksum headers."""
    return error_code(exc) in {"NotImplemented", "InvalidArgument", "InvalidRequest"} and "hecksum" in str(exc)
