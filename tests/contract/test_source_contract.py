"""One contract for every Source: the in-memory twin, and SQS through the wire client and
through aiobotocore, against the emulator over HTTP. Where the twin and SQS differ, the twin
follows SQS.

Each test gets a fresh queue and a ``put`` that sends a message as a producer would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from sluice.config import SqsClientKind
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.model import ReceivedMessage
from sluice.sources.base import Source
from sluice.sources.memory import MemoryQueue
from sluice.sources.sqs import SqsQueue, sqs_client
from sluice.sources.sqs_attributes import Attribute, to_wire

KINDS = ["memory", "wire", "botocore"]
DEADLINE = 20.0


@dataclass
class Queue:
    source: Source
    put: Callable[[str, tuple[Attribute, ...]], Awaitable[None]]


Factory = Callable[[], AbstractAsyncContextManager[Queue]]


@pytest.fixture(params=KINDS)
def queue_factory(request: pytest.FixtureRequest) -> Factory:
    kind = request.param
    if kind == "memory":

        @asynccontextmanager
        async def memory() -> AsyncIterator[Queue]:
            queue = MemoryQueue(clock=time.monotonic)

            async def put(body: str, attributes: tuple[Attribute, ...] = ()) -> None:
                queue.put(body, attributes)

            yield Queue(queue, put)

        return memory
    emulator: Emulator = request.getfixturevalue("emulator")
    client_kind = SqsClientKind(kind)

    @asynccontextmanager
    async def sqs() -> AsyncIterator[Queue]:
        async with sqs_client(
            "us-east-1", emulator.endpoint, 8, EMULATOR_CREDENTIALS, client_kind
        ) as client:
            url = (await client.create_queue(QueueName=f"c-{uuid.uuid4().hex[:12]}"))["QueueUrl"]

            async def put(body: str, attributes: tuple[Attribute, ...] = ()) -> None:
                extra: dict[str, Any] = {}
                if attributes:
                    extra["MessageAttributes"] = to_wire(attributes)
                await client.send_message(QueueUrl=url, MessageBody=body, **extra)

            yield Queue(SqsQueue(client, url), put)

    return sqs


def run(factory: Factory, work: Callable[[Queue], Awaitable[None]]) -> None:
    async def go() -> None:
        async with factory() as queue:
            await asyncio.wait_for(work(queue), DEADLINE)

    asyncio.run(go())


async def receive_all(queue: Queue, expected: int, visibility: int = 30) -> list[ReceivedMessage]:
    """Receive until ``expected`` messages came (each receive takes at most 10)."""
    got: list[ReceivedMessage] = []
    while len(got) < expected:
        batch = await queue.source.receive(10, 1, visibility)
        assert len(batch) <= 10
        got.extend(batch)
    return got


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    limit = time.monotonic() + DEADLINE / 2
    while not await condition():
        assert time.monotonic() < limit, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_receive_takes_at_most_ten_and_hides_them(queue_factory: Factory) -> None:
    async def work(queue: Queue) -> None:
        for i in range(15):
            await queue.put(f"body-{i}", ())
        got = await receive_all(queue, 15)
        assert sorted(m.body for m in got) == sorted(f"body-{i}" for i in range(15))
        assert len({m.message_id for m in got}) == 15
        assert all(m.receive_count == 1 and m.sent_timestamp_ms > 0 for m in got)
        assert await queue.source.receive(10, 1, 30) == []  # all hidden
        depth = await queue.source.depth()
        assert (depth.visible, depth.in_flight) == (0, 15)

    run(queue_factory, work)


def test_delete_removes_a_message_for_good(queue_factory: Factory) -> None:
    async def work(queue: Queue) -> None:
        await queue.put("gone", ())
        (message,) = await receive_all(queue, 1)
        result = await queue.source.delete([message])
        assert result.succeeded == (message,) and result.failed == ()
        depth = await queue.source.depth()
        assert depth.total == 0

    run(queue_factory, work)


def test_visibility_zero_shows_a_message_again_with_its_count_raised(
    queue_factory: Factory,
) -> None:
    async def work(queue: Queue) -> None:
        await queue.put("again", ())
        (first,) = await receive_all(queue, 1)
        result = await queue.source.change_visibility([first], 0)
        assert result.succeeded == (first,)
        (second,) = await receive_all(queue, 1)
        assert second.message_id == first.message_id
        assert second.receipt_handle != first.receipt_handle
        assert second.receive_count == 2

    run(queue_factory, work)


def test_a_message_reappears_when_its_visibility_runs_out(queue_factory: Factory) -> None:
    async def work(queue: Queue) -> None:
        await queue.put("expires", ())
        (first,) = await receive_all(queue, 1, visibility=1)
        again: list[ReceivedMessage] = []

        async def back() -> bool:
            again.extend(await queue.source.receive(10, 1, 30))
            return bool(again)

        await eventually(back, "the message to reappear")
        assert again[0].message_id == first.message_id and again[0].receive_count == 2

    run(queue_factory, work)


def test_a_delete_with_a_stale_receipt_handle_is_answered_as_a_success(
    queue_factory: Factory,
) -> None:
    """SQS: a handle from an earlier receive is accepted (the request succeeds); the twin
    once reported it as failed."""

    async def work(queue: Queue) -> None:
        await queue.put("twice", ())
        (first,) = await receive_all(queue, 1)
        await queue.source.change_visibility([first], 0)
        (second,) = await receive_all(queue, 1)
        stale = await queue.source.delete([first])
        assert stale.succeeded == (first,) and stale.failed == ()
        current = await queue.source.delete([second])
        assert current.succeeded == (second,)
        assert (await queue.source.depth()).total == 0

    run(queue_factory, work)


def test_settling_a_deleted_message_again_is_harmless(queue_factory: Factory) -> None:
    async def work(queue: Queue) -> None:
        await queue.put("once", ())
        (message,) = await receive_all(queue, 1)
        await queue.source.delete([message])
        again = await queue.source.delete([message])
        assert len(again.succeeded) + len(again.failed) == 1  # answered, not raised
        assert (await queue.source.depth()).total == 0

    run(queue_factory, work)


def test_producer_attributes_arrive_with_the_message(queue_factory: Factory) -> None:
    attributes: tuple[Attribute, ...] = (
        ("binary", "Binary", b"\x00\x01\xff"),
        ("count", "Number", "42"),
        ("trace", "String", "abc-123"),
    )

    async def work(queue: Queue) -> None:
        await queue.put("with attributes", attributes)
        (message,) = await receive_all(queue, 1)
        assert message.attributes == attributes

    run(queue_factory, work)


def test_depth_counts_visible_and_in_flight(queue_factory: Factory) -> None:
    async def work(queue: Queue) -> None:
        for i in range(4):
            await queue.put(f"d-{i}", ())
        assert (await queue.source.depth()).visible == 4
        batch: list[ReceivedMessage] = []
        while len(batch) < 1:
            batch = await queue.source.receive(1, 1, 30)
        depth = await queue.source.depth()
        assert (depth.visible, depth.in_flight, depth.delayed) == (3, 1, 0)

    run(queue_factory, work)
