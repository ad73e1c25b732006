"""Synchronous helpers around the SQS emulator for tests (each call runs its own loop)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from sluice.local.emulator import EMULATOR_CREDENTIALS
from sluice.sources.base import QueueDepth
from sluice.sources.sqs import SqsQueue, sqs_client
from sluice.tools.dlq import peek, release
from sluice.tools.sender import send_bodies

T = TypeVar("T")
REGION = "us-east-1"


@dataclass(frozen=True)
class Queues:
    endpoint: str
    url: str
    dlq_url: str


def with_client(endpoint: str, work: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        async with sqs_client(REGION, endpoint, 16, EMULATOR_CREDENTIALS) as client:
            return await work(client)

    return asyncio.run(go())


def make_queues(endpoint: str, *, visibility: int = 30, max_receive: int = 10) -> Queues:
    """A fresh queue with its own DLQ and a redrive policy."""
    name = f"q-{uuid.uuid4().hex[:10]}"

    async def work(client: Any) -> Queues:
        dlq = (await client.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
        arn = (await client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        redrive = orjson.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive)}
        ).decode()
        url = (
            await client.create_queue(
                QueueName=name,
                Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": redrive},
            )
        )["QueueUrl"]
        return Queues(endpoint, url, dlq)

    return with_client(endpoint, work)


def send(endpoint: str, url: str, bodies: Iterable[str]) -> int:
    listed = list(bodies)
    return with_client(endpoint, lambda c: send_bodies(c, url, listed))


def depth(endpoint: str, url: str) -> QueueDepth:
    return with_client(endpoint, lambda c: SqsQueue(c, url).depth())


def dlq_reasons(endpoint: str, dlq_url: str, limit: int = 100_000) -> Counter[str]:
    async def work(client: Any) -> Counter[str]:
        views, _ = await peek(client, dlq_url, limit)
        await release(client, dlq_url, views)
        return Counter(v.reason for v in views)

    return with_client(endpoint, work)


def dlq_bodies(endpoint: str, dlq_url: str, limit: int = 100_000) -> list[str]:
    async def work(client: Any) -> list[str]:
        views, _ = await peek(client, dlq_url, limit)
        await release(client, dlq_url, views)
        return [v.message.body for v in views]

    return with_client(endpoint, work)
