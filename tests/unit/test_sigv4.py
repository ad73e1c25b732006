"""Our SigV4 signer must produce exactly what botocore's signer produces for the same POST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

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
