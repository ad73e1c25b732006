"""AWS's errors onto Sluice's two families: one classifier for every service Sluice calls, one
table of retryable codes per service.

A code is retryable when botocore's standard retry mode would retry it (its throttling and
transient codes, HTTP 5xx and 429), or when the service's own table names it. Anything else
that AWS answered is permanent: the request or the deployment is wrong (AccessDenied,
NoSuchBucket, ResourceNotFound), and retrying cannot help. An error with no answer at all (a
connection reset, a timeout) is transient.
"""

from __future__ import annotations

import enum

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker

from sluice.errors import PermanentError, SluiceError, TransientError


class AwsService(enum.Enum):
    SQS = "SQS"
    S3 = "S3"
    REDSHIFT_DATA = "Redshift Data API"
    REDSHIFT = "Redshift"


# What botocore's standard retry mode retries for every service.
SDK_RETRYABLE = frozenset(
    [
        *ThrottledRetryableChecker._THROTTLED_ERROR_CODES,
        *TransientRetryableChecker._TRANSIENT_ERROR_CODES,
    ]
)
SDK_RETRYABLE_STATUS = frozenset([*TransientRetryableChecker._TRANSIENT_STATUS_CODES, 429])

# What each service adds: codes its documentation names as worth retrying.
SERVICE_RETRYABLE: dict[AwsService, frozenset[str]] = {
    AwsService.SQS: frozenset(
        {
            "AWS.SimpleQueueService.RequestThrottled",
            "KmsThrottled",
            "KMS.ThrottlingException",
            "ServiceUnavailable",
            "InternalError",
            "InternalFailure",
        }
    ),
    AwsService.S3: frozenset({"InternalError", "ServiceUnavailable", "SlowDown"}),
    AwsService.REDSHIFT_DATA: frozenset(
        {
            "InternalServerException",
            "ServiceUnavailableException",
            "ActiveStatementsExceededException",
            "ActiveSessionsExceededException",
            "DatabaseConnectionException",
            "ExecuteStatementException",  # "an environmental error": cluster paused, resizing
            "BatchExecuteStatementException",
        }
    ),
    AwsService.REDSHIFT: frozenset({"InternalFailure", "ServiceUnavailable"}),
}

# Answers that mean "your clock and ours disagree": the SDKs that correct clock skew (the
# JavaScript v3, Java v2, Go v2 and Swift SDKs) retry these once with a corrected clock.
# botocore has no such correction. The set is the JavaScript SDK's CLOCK_SKEW_ERROR_CODES;
# SQS answers a request signed more than 5 minutes off its clock with
# InvalidSignatureException ("Signature expired: ...").
CLOCK_SKEW_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidSignatureException",
        "RequestExpired",
        "RequestInTheFuture",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    }
)

# Everything that means "no answer came": retried, never permanent.
NO_ANSWER: tuple[type[BaseException], ...] = (
    BotoCoreError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def is_retryable(service: AwsService, code: str, status: int) -> bool:
    return (
        code in SDK_RETRYABLE
        or code in SERVICE_RETRYABLE[service]
        or status in SDK_RETRYABLE_STATUS
        or status >= 500
    )


def code_and_status(exc: ClientError) -> tuple[str, int, str]:
    """The error code, the HTTP status and AWS's message of a ClientError."""
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(error.get("Code", "")), status, str(error.get("Message", ""))


def classify_code(
    service: AwsService, action: str, code: str, status: int, text: str
) -> SluiceError:
    message = f"{service.value} {action} failed: {code} {text}".strip()
    if is_retryable(service, code, status):
        return TransientError(message)
    return PermanentError(message)


def classify(service: AwsService, action: str, exc: BaseException) -> SluiceError:
    """Any exception an AWS call raised, as the error Sluice's callers handle."""
    if isinstance(exc, ClientError):
        code, status, text = code_and_status(exc)
        return classify_code(service, action, code, status, text)
    return TransientError(f"{service.value} {action} failed: {type(exc).__name__}: {exc}")
