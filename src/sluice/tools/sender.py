"""Put messages on a queue fast: SendMessageBatch groups, several in flight, optional rate.

Groups are bounded by SQS's count (10) and by its payload bound (1 MiB, attributes
included), so large bodies go in smaller groups instead of failing the whole call. Each group
goes through ``sources.sqs_send.send_group``, the worker's dead-letter path's own primitive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from sluice.errors import PermanentError
from sluice.sources.sqs_attributes import size_bounded_groups
from sluice.sources.sqs_send import Outgoing, SendReport, send_group


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
