"""The pipeline's bounds over in-memory fakes: bytes held, idle short polls, polls in flight
at a stop. Each run is bounded by a deadline; conditions are awaited, never slept on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import orjson
import pytest
import structlog

from sluice.batching import FlushPolicy
from sluice.held import body_size
from sluice.model import MappedRow, ReceivedMessage, StopReason
from sluice.sources.memory import MemoryQueue
from tests.unit.test_pipeline_memory import drain, events, options, run_until, world

KIB = 1024


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[dict[str, object]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def heavy_events(count: int, size: int) -> list[str]:
    """Valid events of about ``size`` bytes each (an unknown field carries the weight)."""
    out = []
    for i, body in enumerate(events(count, seed=21)):
        event = orjson.loads(body)
        event["padding"] = f"{i}-" + "x" * size
        out.append(orjson.dumps(event).decode())
    return out


def test_held_bytes_never_exceed_the_bound_while_loads_are_blocked() -> None:
    bodies = heavy_events(60, 100 * KIB)
    w = world(bodies)
    opts = options(
        receive_concurrency=3,
        max_held=10_000,  # the count bound is far away: only bytes can stop receiving
        max_held_bytes=3 * 1024 * KIB,
        max_message_bytes=128 * KIB,  # one poll may bring 10 x 128 KiB
        flush=FlushPolicy(max_rows=1000, max_bytes=10**9, max_age=0.01),
        drain=False,
    )
    pipeline = w.pipeline(opts)
    release = asyncio.Event()
    loads_waiting = 0

    async def blocked(rows: Sequence[MappedRow]) -> None:
        nonlocal loads_waiting
        loads_waiting += 1
        await release.wait()

    w.sink.before_load = blocked
    peaks: list[int] = []

    async def stuck_then_unblock() -> None:
        receives = w.queue.calls["receive"]
        peaks.append(pipeline.held_bytes)
        # Receivers have stopped: no receive for a while although messages wait in the queue.
        for _ in range(50):
            await asyncio.sleep(0.002)
            assert w.queue.calls["receive"] == receives
        release.set()

    run_until(
        pipeline,
        lambda p: loads_waiting >= 1 and not p._may_receive() and p.receivers.polls_in_flight == 0,
        after=stuck_then_unblock,
    )
    assert 0 < peaks[0] <= opts.max_held_bytes
    assert len(w.queue.bodies) > 0  # stopped by bytes, with messages still queued
    assert sum(body_size_of(b) for b in bodies) > opts.max_held_bytes


def body_size_of(body: str) -> int:
    return body_size(ReceivedMessage("m", "h", body, 1, 0))


def test_held_bytes_go_back_to_zero_after_a_drain() -> None:
    bodies = heavy_events(30, 50 * KIB)
    w = world(bodies)
    pipeline = w.pipeline(options(max_held_bytes=2 * 1024 * KIB, max_message_bytes=64 * KIB))
    assert drain(pipeline) is StopReason.DRAINED
    assert len(w.sink.table) == 30
    assert pipeline.held_bytes == 0


def test_idle_short_polls_back_off(logs: list[dict[str, object]]) -> None:
    w = world([])
    pipeline = w.pipeline(options(wait_time_seconds=0, receive_concurrency=4, drain=False))
    started = time.monotonic()
    run_until(pipeline, lambda p: time.monotonic() - started > 1.0)
    receives = w.queue.calls["receive"]
    # Without backoff: thousands in a second. With it: a handful per receiver.
    assert receives < 4 * 12, receives
    assert sum(1 for line in logs if line["event"] == "short_poll_backoff") >= 1


def test_messages_wake_receivers_that_were_backing_off() -> None:
    w = world([])
    pipeline = w.pipeline(options(wait_time_seconds=0, receive_concurrency=4, drain=False))
    bodies = events(200, seed=5)

    async def after_idle() -> None:
        for body in bodies:
            w.queue.put(body)
        limit = time.monotonic() + 30
        while len(w.sink.table) < len(bodies):
            assert time.monotonic() < limit, "the messages were not loaded"
            await asyncio.sleep(0.005)

    started = time.monotonic()
    run_until(pipeline, lambda p: time.monotonic() - started > 2.0, after=after_idle)
    assert len(w.sink.table) == len(bodies)


def test_long_polls_do_not_back_off() -> None:
    assert options(wait_time_seconds=1).empty_receive_backoff is None
    assert options(wait_time_seconds=0, drain=True).empty_receive_backoff.cap == 1.0  # type: ignore[union-attr]
    assert options(wait_time_seconds=0, drain=False).empty_receive_backoff.cap == 20.0  # type: ignore[union-attr]


class SlowPollQueue(MemoryQueue):
    """SQS hides the messages a poll takes before its answer arrives: a poll cancelled then
    strands them until their visibility timeout. This queue takes, then waits to answer."""

    answer: asyncio.Event | None = None
    taken: list[ReceivedMessage]

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        out = await super().receive(max_messages, wait_seconds, visibility_timeout)
        if out and self.answer is not None:
            self.taken.extend(out)
            await self.answer.wait()
        return out


def test_a_stop_lets_polls_in_flight_finish_and_releases_what_they_bring() -> None:
    queue = SlowPollQueue(clock=time.monotonic)
    queue.taken = []
    for body in events(40, seed=9):
        queue.put(body)
    w = world([])
    w.queue = queue
    pipeline = w.pipeline(options(receive_concurrency=4, visibility_timeout=600, drain=False))
    queue.answer = asyncio.Event()

    async def answer_after_the_stop() -> None:
        asyncio.get_running_loop().call_later(0.05, queue.answer.set)  # type: ignore[union-attr]

    run_until(pipeline, lambda p: len(queue.taken) >= 40, after=answer_after_the_stop)
    depth = asyncio.run(queue.depth())
    assert depth.in_flight == 0, f"{depth.in_flight} messages stranded by the stop"
    assert pipeline.counters.released == 40
    assert w.sink.table == {}


def test_a_stop_does_not_wait_for_receivers_backing_off() -> None:
    w = world([])
    pipeline = w.pipeline(options(wait_time_seconds=0, shutdown_grace=30.0, drain=False))
    started = time.monotonic()
    # On an empty queue only the scout polls, backing off: by its 7th call it sleeps ~1-3 s.
    run_until(pipeline, lambda p: w.queue.calls.get("receive", 0) > 6)
    assert time.monotonic() - started < 10
