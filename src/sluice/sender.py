"""Put messages on a queue fast: SendMessageBatch of 10, several in flight, optional rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sluice.errors import TransientError
from sluice.policies import ExponentialBackoff
from sluice.sources.sqs import BATCH_LIMIT, call

MAX_SEND_ATTEMPTS = 8


async def send_group(client: Any, url: str, bodies: Sequence[str]) -> None:
    """Send up to ten bodies, retrying failed entries with backoff."""
    pending = {str(i): body for i, body in enumerate(bodies)}
    backoff = ExponentialBackoff(base=0.05, cap=2.0)
    for attempt in range(MAX_SEND_ATTEMPTS):
        try:
            response = await call(
                client.send_message_batch,
                "SendMessageBatch",
                QueueUrl=url,
                Entries=[{"Id": i, "MessageBody": b} for i, b in pending.items()],
            )
        except TransientError:
            await asyncio.sleep(backoff.delay(attempt))
            continue
        for ok in response.get("Successful", ()):
            pending.pop(ok["Id"], None)
        if not pending:
            return
        await asyncio.sleep(backoff.delay(attempt))
    raise TransientError(
        f"could not send {len(pending)} message(s) after {MAX_SEND_ATTEMPTS} tries"
    )


async def send_bodies(
    client: Any,
    url: str,
    bodies: Iterable[str],
    *,
    rate: float | None = None,
    concurrency: int = 16,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send every body; ``rate`` caps messages per second. Returns how many were sent."""
    slots = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    sent = 0

    async def one(group: list[str]) -> None:
        try:
            await send_group(client, url, group)
        finally:
            slots.release()
        if on_sent is not None:
            on_sent(len(group))

    groups: list[list[str]] = [[]]
    for body in bodies:
        groups[-1].append(body)
        if len(groups[-1]) == BATCH_LIMIT:
            groups.append([])
    for group in groups:
        if not group:
            continue
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(group)))
        sent += len(group)
    await asyncio.gather(*tasks)
    return sent
