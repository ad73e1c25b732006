"""The one AWS error classifier: botocore's standard retry tables, plus each service's own."""

from __future__ import annotations

import aiohttp
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sluice.aws_errors import AwsService, classify
from sluice.errors import PermanentError, TransientError


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


@pytest.mark.parametrize("service", list(AwsService))
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("TooManyRequestsException", 400),
        ("RequestLimitExceeded", 400),
        ("SlowDown", 503),
        ("RequestTimeout", 400),
        ("Anything", 500),
        ("Anything", 503),
        ("Anything", 429),
    ],
)
def test_throttling_and_server_errors_are_transient_for_every_service(
    service: AwsService, code: str, status: int
) -> None:
    assert isinstance(classify(service, "Op", client_error(code, status)), TransientError)


@pytest.mark.parametrize("service", list(AwsService))
@pytest.mark.parametrize(
    "code", ["AccessDenied", "AccessDeniedException", "ValidationException", "NoSuchBucket"]
)
def test_a_wrong_request_or_deployment_is_permanent(service: AwsService, code: str) -> None:
    assert isinstance(classify(service, "Op", client_error(code, 400)), PermanentError)


@pytest.mark.parametrize(
    ("service", "code"),
    [
        (AwsService.SQS, "AWS.SimpleQueueService.RequestThrottled"),
        (AwsService.SQS, "KmsThrottled"),
        (AwsService.REDSHIFT_DATA, "ActiveStatementsExceededException"),
        (AwsService.REDSHIFT_DATA, "ExecuteStatementException"),
        (AwsService.S3, "InternalError"),
    ],
)
def test_each_service_adds_its_own_retryable_codes(service: AwsService, code: str) -> None:
    assert isinstance(classify(service, "Op", client_error(code, 400)), TransientError)
    other = next(s for s in AwsService if code not in _table(s))
    assert isinstance(classify(other, "Op", client_error(code, 400)), PermanentError)


def _table(service: AwsService) -> frozenset[str]:
    from sluice.aws_errors import SERVICE_RETRYABLE

    return SERVICE_RETRYABLE[service]


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://sqs"),
        aiohttp.ClientConnectionError("reset"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_no_answer_at_all_is_transient(exc: BaseException) -> None:
    assert isinstance(classify(AwsService.SQS, "Op", exc), TransientError)


def test_the_error_names_the_service_action_and_code() -> None:
    error = classify(AwsService.S3, "PutObject", client_error("AccessDenied", 403))
    assert str(error) == "S3 PutObject failed: AccessDenied m"
