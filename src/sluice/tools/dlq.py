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
from sluice.sources.sqs import SqsQueue, call, to_message
from sluice.sources.sqs_attributes import producer_attributes, to_wire
from sluice.sources.sqs_send import Outgoing
from sluice.tools.sender import send_messages

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
            message = to_message(raw)
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
    failed: tuple[tuple[str, str], ...] = ()  # (source message id, why): left in the DLQ


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
    """Send dead letters back to the source queue as the producer sent them, then delete them.

    The body and the producer's own attributes go back; Sluice's ``sluice.*`` ones do not.
    Sent first, deleted after: a crash in between replays a message twice, which the merge
    absorbs; the other order could lose it. A letter that could not be sent is released
    back to the DLQ (visible again at once) and reported, never deleted.
    """
    views, _ = await peek(client, dlq_url, limit)
    chosen = [v for v in views if reasons is None or v.reason in reasons]
    skipped = [v for v in views if v not in chosen]
    await release(client, dlq_url, skipped)
    report = await send_messages(
        client,
        queue_url,
        (Outgoing(v.message.body, to_wire(producer_attributes(v.message))) for v in chosen),
        rate=rate,
        on_sent=on_sent,
    )
    dlq = SqsQueue(client, dlq_url)
    await dlq.delete([chosen[i].message for i in report.sent])
    unsent = [chosen[i] for i, _ in report.failed]
    await release(client, dlq_url, unsent)
    return ReplayResult(
        len(report.sent),
        len(skipped),
        tuple((chosen[i].source_message_id, why) for i, why in report.failed),
    )


async def purge(client: Any, url: str) -> None:
    await call(client.purge_queue, "PurgeQueue", QueueUrl=url)
