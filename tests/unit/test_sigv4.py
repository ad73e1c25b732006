"""The wire client's SigV4 signer (awscrt's) must produce exactly what botocore's signer
produces for the same POST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.sources.sigv4 import Credentials, sign_post

NOW = datetime(2026, 11, 28, 10, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLETOKEN=="])
@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/", "sqs.eu-west-1.amazonaws.com", "/"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566", "/"),
    ],
)
def test_signature_matches_botocore(
    monkeypatch: pytest.MonkeyPatch, token: str | None, url: str, host: str, path: str
) -> None:
    body = b'{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/1/q","MaxNumberOfMessages":10}'
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "AmazonSQS.ReceiveMessage",
    }
    ours = sign_post(
        host=host,
        path=path,
        headers=headers,
        body=body,
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token),
        region="eu-west-1",
        service="sqs",
        now=NOW,
    )

    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": headers["content-type"], "X-Amz-Target": headers["x-amz-target"]},
    )
    botocore_auth.SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "sqs", "eu-west-1"
    ).add_auth(request)

    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_credentials_repr_hides_the_secret() -> None:
    shown = repr(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "tok"))
    assert "wJalr" not in shown and "tok" not in shown


def botocore_headers(
    url: str, body: bytes, target: str, token: str | None, now: datetime
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    with mock.patch.object(botocore_auth, "get_current_datetime", lambda: now.replace(tzinfo=None)):
        botocore_auth.SigV4Auth(
            BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "sqs", "us-east-1"
        ).add_auth(request)
    return dict(request.headers)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=4096),
    path=st.sampled_from(["/", "/queue/", "/000000000000/"]),
    action=st.sampled_from(["ReceiveMessage", "DeleteMessageBatch", "SendMessageBatch"]),
    token=st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=", min_size=1),
    seconds=st.integers(min_value=0, max_value=10 * 365 * 86_400),
)
def test_any_request_is_signed_as_botocore_signs_it(
    body: bytes, path: str, action: str, token: str | None, seconds: int
) -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    target = f"AmazonSQS.{action}"
    ours = sign_post(
        host="127.0.0.1:4566",
        path=path,
        headers={"content-type": "application/x-amz-json-1.0", "x-amz-target": target},
        body=body,
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token),
        region="us-east-1",
        service="sqs",
        now=now,
    )
    theirs = botocore_headers(f"http://127.0.0.1:4566{path}", body, target, token, now)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")
