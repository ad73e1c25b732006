"""Put messages on a queue fast: SendMessageBatch groups, several in flight, optional rate.

Groups are bounded by SQS's count (10) and by its payload bound (1 MiB, attributes
included), so large bodies go in smaller groups instead of failing the whole call. A send
reports each message it could not deliver and why, so a caller never mistakes a failed
entry for a sent one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import PermanentError, TransientError
from sluice.policies import ExponentialBackoff
from sluice.sources.sqs import call
from sluice.sources.sqs_attributes import message_size, size_bounded_groups

MAX_SEND_ATTEMPTS = 8


@dataclass(frozen=True)
class Outgoing:
    """One message to send: a body and the MessageAttributes parameter for it."""

    body: str
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)


@dataclass
class SendReport:
    """Which messages (by position in the input) were sent, and which failed and why."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


async def send_group(
    client: Any,
    url: str,
    messages: Sequence[tuple[int, Outgoing]],
    *,
    attempts: int = MAX_SEND_ATTEMPTS,
) -> SendReport:
    """Send one group, retrying transient failures; a sender's fault fails its entry at once."""
    pending = {str(i): m for i, m in messages}
    report = SendReport()
    backoff = ExponentialBackoff(base=0.05, cap=2.0)
    last = "not tried"
    for attempt in range(attempts):
        entries = [_entry(i, m) for i, m in pending.items()]
        try:
            response = await call(
                client.send_message_batch, "SendMessageBatch", QueueUrl=url, Entries=entries
            )
        except TransientError as exc:
            last = str(exc)
            await asyncio.sleep(backoff.delay(attempt))
            continue
        except PermanentError as exc:  # the whole call refused: no entry was sent
            report.failed.extend((int(i), str(exc)) for i in pending)
            return report
        for ok in response.get("Successful", ()):
            if pending.pop(ok["Id"], None) is not None:
                report.sent.append(int(ok["Id"]))
        for bad in response.get("Failed", ()):
            why = f"{bad.get('Code', '')}: {bad.get('Message', '')}"
            last = why
            if bad.get("SenderFault") and pending.pop(bad["Id"], None) is not None:
                report.failed.append((int(bad["Id"]), why))
        if not pending:
            return report
        await asyncio.sleep(backoff.delay(attempt))
    report.failed.extend((int(i), f"not sent after {attempts} tries: {last}") for i in pending)
    return report


def _entry(entry_id: str, message: Outgoing) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = dict(message.attributes)
    return entry


async def send_messages(
    client: Any,
    url: str,
    messages: Iterable[Outgoing],
    *,
    rate: float | None = None,
    concurrency: int = 16,
    on_sent: Callable[[int], None] | None = None,
) -> SendReport:
    """Send every message; ``rate`` caps messages per second."""
    slots = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[SendReport]] = []
    started = time.monotonic()
    queued = 0

    async def one(group: list[tuple[int, Outgoing]]) -> SendReport:
        try:
            report = await send_group(client, url, group)
        finally:
            slots.release()
        if on_sent is not None:
            on_sent(len(report.sent))
        return report

    numbered = list(enumerate(messages))
    for group in size_bounded_groups(numbered, lambda item: item[1].size):
        if rate:
            ahead = queued / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(group)))
        queued += len(group)
    total = SendReport()
    for report in await asyncio.gather(*tasks):
        total.sent.extend(report.sent)
        total.failed.extend(report.failed)
    total.sent.sort()
    total.failed.sort()
    return total


async def send_bodies(
    client: Any,
    url: str,
    bodies: Iterable[str],
    *,
    rate: float | None = None,
    concurrency: int = 16,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send every body; returns how many were sent, raises if any could not be."""
    report = await send_messages(
        client,
        url,
        (Outgoing(body) for body in bodies),
        rate=rate,
        concurrency=concurrency,
        on_sent=on_sent,
    )
    if report.failed:
        index, why = report.failed[0]
        raise PermanentError(
            f"{len(report.failed)} message(s) not sent (sent {len(report.sent)}); "
            f"the first, #{index + 1}: {why}"
        )
    return len(report.sent)
