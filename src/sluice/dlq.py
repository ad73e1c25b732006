"""Dead-letter queue operations behind `sluice dlq`: stats, show, replay, purge.

Looking at a DLQ means receiving from it, so ``peek`` hides what it reads for a short
visibility timeout and then releases it (visibility 0): nothing is consumed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.model import ReceivedMessage
from sluice.sender import send_bodies
from sluice.sources.sqs import SqsQueue, call

PEEK_VISIBILITY = 60  # seconds a peeked message stays hidden while we look at it


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    message: ReceivedMessage
    reason: str
    detail: str
    source_message_id: str


def _attr(raw: dict[str, Any], name: str) -> str:
    value = raw.get("MessageAttributes", {}).get(name, {})
    return str(value.get("StringValue", ""))


async def peek(client: Any, url: str, limit: int) -> tuple[list[DeadLetterView], list[str]]:
    """Up to ``limit`` dead letters, hidden for PEEK_VISIBILITY; and their receipt handles."""
    views: list[DeadLetterView] = []
    handles: list[str] = []
    empty_polls = 0
    while len(views) < limit and empty_polls < 2:
        response = await call(
            client.receive_message,
            "ReceiveMessage",
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(views)),
            WaitTimeSeconds=1,
            VisibilityTimeout=PEEK_VISIBILITY,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        batch = response.get("Messages", [])
        if not batch:
            empty_polls += 1
            continue
        empty_polls = 0
        for raw in batch:
            attrs = raw.get("Attributes", {})
            message = ReceivedMessage(
                raw["MessageId"],
                raw["ReceiptHandle"],
                raw.get("Body", ""),
                int(attrs.get("ApproximateReceiveCount", 1)),
                int(attrs.get("SentTimestamp", 0)),
            )
            views.append(
                DeadLetterView(
                    message,
                    _attr(raw, "sluice.reason") or "redrive_policy",
                    _attr(raw, "sluice.detail"),
                    _attr(raw, "sluice.source_message_id") or raw["MessageId"],
                )
            )
            handles.append(raw["ReceiptHandle"])
    return views, handles


async def release(client: Any, url: str, views: Sequence[DeadLetterView]) -> None:
    if views:
        await SqsQueue(client, url).change_visibility([v.message for v in views], 0)


async def reason_counts(client: Any, url: str, limit: int) -> Counter[str]:
    views, _ = await peek(client, url, limit)
    await release(client, url, views)
    return Counter(v.reason for v in views)


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    skipped: int


async def replay(
    client: Any,
    dlq_url: str,
    queue_url: str,
    *,
    reasons: frozenset[str] | None,
    limit: int,
    rate: float | None,
    on_sent: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Send dead letters' original bodies back to the source queue, then delete them.

    Sent first, deleted after: a crash in between replays a message twice, which the
    merge absorbs; the other order could lose it.
    """
    views, _ = await peek(client, dlq_url, limit)
    chosen = [v for v in views if reasons is None or v.reason in reasons]
    skipped = [v for v in views if v not in chosen]
    await release(client, dlq_url, skipped)
    await send_bodies(
        client, queue_url, (v.message.body for v in chosen), rate=rate, on_sent=on_sent
    )
    dlq = SqsQueue(client, dlq_url)
    await dlq.delete([v.message for v in chosen])
    return ReplayResult(len(chosen), len(skipped))


async def purge(client: Any, url: str) -> None:
    await call(client.purge_queue, "PurgeQueue", QueueUrl=url)
