"""The emulator's in-flight index (src/sluice/local/fauxqs_inflight.mjs) changes no behaviour.

Each scenario runs against fauxqs as published and with the index preloaded, and both must
see visibility timeouts expire at the same moments: a shortened one, a released one, one
received with a shorter timeout than everything already in flight, and a FIFO one. Waits are
long polls with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator, running_emulator
from sluice.sources.sqs import sqs_client


@dataclass(frozen=True)
class Case:
    emulator: Emulator
    log: Path
    indexed: bool


@pytest.fixture(scope="module", params=[True, False], ids=["indexed", "as-published"])
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Case]:
    log = tmp_path_factory.mktemp("fauxqs") / "fauxqs.log"
    with running_emulator(log_path=log, index_in_flight=request.param) as emulator:
        yield Case(emulator, log, request.param)


async def _receive_within(client: Any, url: str, seconds: float, **kwargs: Any) -> list[str]:
    """Bodies received by long polls until one returns messages or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        wait = max(1, min(20, int(deadline - time.monotonic())))
        got = await client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, **kwargs
        )
        if got.get("Messages"):
            return sorted(m["Body"] for m in got["Messages"])
    return []


def _run(emulator: Emulator, scenario: Any) -> Any:
    async def go() -> Any:
        async with sqs_client("us-east-1", emulator.endpoint, 4, EMULATOR_CREDENTIALS) as c:
            return await scenario(c)

    return asyncio.run(go())


def test_preload_reports_itself(case: Case) -> None:
    """Installed where asked for, and never 'internals changed' (pinned fauxqs 1.9.2)."""
    text = case.log.read_text()
    assert "not installed" not in text
    assert ("in-flight index installed" in text) == case.indexed


def test_shortened_released_and_kept_visibility(case: Case) -> None:

    async def scenario(c: Any) -> tuple[list[str], list[str], list[str]]:
        url = (await c.create_queue(QueueName="vis-change", Attributes={}))["QueueUrl"]
        await c.purge_queue(QueueUrl=url)
        for body in ("short", "released", "kept"):
            await c.send_message(QueueUrl=url, MessageBody=body)
        held = (
            await c.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        )["Messages"]
        handle = {m["Body"]: m["ReceiptHandle"] for m in held}
        await c.change_message_visibility(
            QueueUrl=url, ReceiptHandle=handle["short"], VisibilityTimeout=1
        )
        await c.change_message_visibility(
            QueueUrl=url, ReceiptHandle=handle["released"], VisibilityTimeout=0
        )
        at_once = await _receive_within(c, url, 1, VisibilityTimeout=60)
        started = time.monotonic()
        later = await _receive_within(c, url, 10, VisibilityTimeout=60)
        assert time.monotonic() - started < 5
        nothing = await _receive_within(c, url, 2, VisibilityTimeout=60)
        return at_once, later, nothing

    assert _run(case.emulator, scenario) == (["released"], ["short"], [])


def test_shorter_timeout_than_all_in_flight(case: Case) -> None:
    """Many messages in flight for a minute; one received for a second comes back first."""

    async def scenario(c: Any) -> tuple[list[str], float]:
        url = (await c.create_queue(QueueName="vis-shorter", Attributes={}))["QueueUrl"]
        await c.purge_queue(QueueUrl=url)
        for start in range(0, 200, 10):
            entries = [{"Id": str(i), "MessageBody": f"long-{i}"} for i in range(start, start + 10)]
            await c.send_message_batch(QueueUrl=url, Entries=entries)
        held = 0
        while held < 200:
            got = await c.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
            )
            held += len(got.get("Messages", []))
        await c.send_message(QueueUrl=url, MessageBody="brief")
        first = await _receive_within(c, url, 2, VisibilityTimeout=1)
        assert first == ["brief"]
        started = time.monotonic()
        again = await _receive_within(c, url, 10, VisibilityTimeout=60)
        return again, time.monotonic() - started

    again, waited = _run(case.emulator, scenario)
    assert again == ["brief"]
    assert waited < 5


def test_fifo_visibility_expires(case: Case) -> None:

    async def scenario(c: Any) -> tuple[list[str], list[str]]:
        url = (
            await c.create_queue(
                QueueName="vis.fifo",
                Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
            )
        )["QueueUrl"]
        await c.send_message(QueueUrl=url, MessageBody="f1", MessageGroupId="g")
        await c.send_message(QueueUrl=url, MessageBody="f2", MessageGroupId="g")
        first = await _receive_within(c, url, 2, VisibilityTimeout=1)
        again = await _receive_within(c, url, 10, VisibilityTimeout=60)
        return first, again

    first, again = _run(case.emulator, scenario)
    assert first == again
    assert first[0] == "f1"
