"""SqsQueue's own retries of deletes and visibility changes spend from botocore's retry quota:
once SQS has throttled enough of them, failures are left to SQS instead of retried.

A scripted client stands in for SQS here (pure retry logic); the same SqsQueue runs against
the emulator through both clients in tests/contract/test_source_contract.py."""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import ClientError

from sluice.model import ReceivedMessage
from sluice.policies import ExponentialBackoff
from sluice.sources.sdk_policies import RetryQuota
from sluice.sources.sqs import SqsQueue

NO_WAIT = ExponentialBackoff(base=0.0, cap=0.0, floor=0.0)


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
        "DeleteMessageBatch",
    )


class ScriptedSqs:
    """Answers DeleteMessageBatch from a script: an exception to raise, or success."""

    def __init__(self, script: list[BaseException | None]) -> None:
        self.script = script
        self.calls = 0

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if step is not None:
            raise step
        return {"Successful": [{"Id": entry["Id"]} for entry in params["Entries"]]}


def messages(count: int) -> list[ReceivedMessage]:
    return [ReceivedMessage(f"m{i}", f"h{i}", "{}", 1, 0) for i in range(count)]


def test_an_empty_quota_leaves_the_failure_to_sqs_without_retrying() -> None:
    sqs = ScriptedSqs([throttled()])
    queue = SqsQueue(sqs, "q", backoff=NO_WAIT, quota=RetryQuota(capacity=5))
    result = asyncio.run(queue.delete(messages(10)))
    assert sqs.calls == 2  # the call and the one retry 5 tokens allowed
    assert result.succeeded == ()
    assert len(result.failed) == 10
    assert all("retry quota empty" in why for _, why in result.failed)
    assert queue.retry_quota.available == 0


def test_a_retried_success_refunds_what_it_spent() -> None:
    sqs = ScriptedSqs([throttled(), throttled(), None])
    queue = SqsQueue(sqs, "q", backoff=NO_WAIT)
    result = asyncio.run(queue.delete(messages(10)))
    assert sqs.calls == 3
    assert len(result.succeeded) == 10
    assert queue.retry_quota.available == 500 - 5 - 5 + 5


def test_timeouts_cost_double() -> None:
    sqs = ScriptedSqs([TimeoutError(), None])
    queue = SqsQueue(sqs, "q", backoff=NO_WAIT, quota=RetryQuota(capacity=9))
    result = asyncio.run(queue.delete(messages(3)))
    assert sqs.calls == 1  # a timeout retry costs 10: more than 9 left
    assert len(result.failed) == 3


def test_the_retry_limit_still_holds_with_a_full_quota() -> None:
    sqs = ScriptedSqs([throttled()])
    queue = SqsQueue(sqs, "q", entry_retries=2, backoff=NO_WAIT)
    result = asyncio.run(queue.delete(messages(1)))
    assert sqs.calls == 3
    assert "retry quota" not in result.failed[0][1]
    assert queue.retry_quota.available == 490
