"""SQS events as the event source mapping delivers them to Lambda, and a context to go with.

The record shape follows AWS's documentation of the SQS event for Lambda
(https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html): lower-case ``messageAttributes``
with ``stringValue`` / ``binaryValue`` (base64) and ``dataType``, the system ``attributes``
as text.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:appflyer-queue"


def record(
    body: str,
    *,
    message_id: str | None = None,
    receive_count: int = 1,
    sent_ms: int = 1_764_237_600_000,
    attributes: dict[str, str | bytes] | None = None,
) -> dict[str, object]:
    message_attributes: dict[str, object] = {}
    for name, value in (attributes or {}).items():
        if isinstance(value, bytes):
            message_attributes[name] = {
                "binaryValue": base64.b64encode(value).decode(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            }
        else:
            message_attributes[name] = {
                "stringValue": value,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
    mid = message_id or str(uuid.uuid4())
    return {
        "messageId": mid,
        "receiptHandle": f"AQEB{uuid.uuid4().hex}{mid}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent_ms),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 5),
        },
        "messageAttributes": message_attributes,
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def event(records: Iterable[dict[str, object]]) -> dict[str, object]:
    return {"Records": list(records)}


def appsflyer(n: int, **changes: object) -> str:
    return orjson.dumps(
        {
            "appsflyer_id": f"1700000000000-{n}",
            "event_name": "af_purchase",
            "event_time": "2026-11-27 10:00:00.123",
            "event_revenue": "1.5",
        }
        | changes
    ).decode()


def sns(message: str) -> str:
    return orjson.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:appsflyer",
            "Message": message,
            "Timestamp": "2026-11-27T10:00:00.000Z",
        }
    ).decode()


def failures(response: dict[str, list[dict[str, str]]]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


@dataclass
class FakeContext:
    """Lambda's context: ``remaining_ms`` is asked each time, so a test can script it."""

    remaining_ms: Callable[[], int] = lambda: 60_000
    function_name: str = "sluice-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms()
