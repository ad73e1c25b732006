"""The pipeline end to end over in-memory fakes: MemoryQueue -> Pipeline -> MemorySink.

Every run is bounded by ``asyncio.wait_for``; nothing sleeps and hopes. Conditions are
observed from inside the fakes (at load time) or awaited with deadlines.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import orjson
import pytest
import structlog

from sluice.batching import FlushPolicy
from sluice.config import Settings, SinkKind
from sluice.errors import FailureReason
from sluice.mapping import load_mapping
from sluice.model import CircuitState, MappedRow, StopReason
from sluice.pipeline import DRAIN_POLL_WAIT, Pipeline, PipelineOptions
from sluice.policies import ExponentialBackoff
from sluice.runtime.worker import pipeline_options
from sluice.sinks.memory import MemorySink
from sluice.sources.memory import MemoryDeadLetters, MemoryQueue
from sluice.tools.synth import MALFORMED_KINDS, appsflyer_event, malformed

MAPPING = load_mapping(None, "events")
DEADLINE = 30.0  # seconds any single run may take before the test fails

S3_TEST_EVENT = orjson.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}).decode()
S3_NOTIFICATION = orjson.dumps({"Records": [{"eventSource": "aws:s3", "s3": {}}]}).decode()


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[dict[str, object]]]:
    """Keep the pipeline's log lines as data (and off the terminal)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(count: int, seed: int = 1, start: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [orjson.dumps(appsflyer_event(rng, start + i)).decode() for i in range(count)]


def key_of(body: str) -> str:
    return MAPPING.dedupe_key(orjson.loads(body), body)


def options(**overrides: object) -> PipelineOptions:
    base = PipelineOptions(
        receive_concurrency=2,
        max_messages=10,
        wait_time_seconds=1,
        visibility_timeout=60,
        max_held=1000,
        flush=FlushPolicy(max_rows=10, max_bytes=10**8, max_age=0.05),
        load_concurrency=1,
        shutdown_grace=5.0,
        heartbeat_interval=5.0,
        stats_interval=60.0,
        worker_id="unit",
        backoff=ExponentialBackoff(base=0.01, cap=0.04, floor=0.01),
        drain=True,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class World:
    queue: MemoryQueue
    sink: MemorySink
    dlq: MemoryDeadLetters | None

    def pipeline(self, opts: PipelineOptions) -> Pipeline:
        return Pipeline(self.queue, self.sink, self.dlq, MAPPING, opts)


def world(bodies: Sequence[str] = (), *, dlq: bool = True, **sink_knobs: object) -> World:
    queue = MemoryQueue(clock=time.monotonic)
    for body in bodies:
        queue.put(body)
    sink = MemorySink(**sink_knobs)  # type: ignore[arg-type]
    return World(queue, sink, MemoryDeadLetters() if dlq else None)


def drain(pipeline: Pipeline, *, deadline: float = DEADLINE) -> StopReason:
    async def go() -> StopReason:
        return await asyncio.wait_for(pipeline.run(asyncio.Event()), deadline)

    return asyncio.run(go())


def run_until(
    pipeline: Pipeline,
    condition: Callable[[Pipeline], bool],
    *,
    deadline: float = DEADLINE,
    after: Callable[[], Awaitable[None]] | None = None,
) -> StopReason:
    """Run (not draining) until ``condition`` holds, then stop it; fail past ``deadline``."""

    async def go() -> StopReason:
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        limit = time.monotonic() + deadline
        while not condition(pipeline):
            if task.done():
                return task.result()
            assert time.monotonic() < limit, "condition not reached before the deadline"
            await asyncio.sleep(0.005)
        if after is not None:
            await after()
        stop.set()
        return await asyncio.wait_for(task, deadline)

    return asyncio.run(go())


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    limit = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < limit, "condition not reached before the deadline"
        await asyncio.sleep(0.001)


# -- the happy path --------------------------------------------------------------------------


def test_every_valid_message_is_loaded_once_and_deleted() -> None:
    bodies = events(57)
    w = world(bodies)
    pipeline = w.pipeline(options())
    assert drain(pipeline) is StopReason.DRAINED
    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert set(w.sink.committed_keys.values()) == {1}  # no key went to a committed load twice
    assert w.queue.bodies == []
    assert w.dlq is not None
    assert w.dlq.letters == []
    c = pipeline.counters
    assert (c.received, c.inserted, c.deleted, c.duplicates, c.failed) == (57, 57, 57, 0, 0)
    assert c.batches == len(w.sink.calls)
    assert pipeline.held == 0


def test_loaded_rows_carry_message_id_and_raw_body() -> None:
    bodies = events(3)
    w = world(bodies)
    drain(w.pipeline(options()))
    names = [c.name for c in MAPPING.load_columns]
    raw = names.index("raw_event")
    assert sorted(str(v[raw]) for v in w.sink.table.values()) == sorted(bodies)
    ids = {str(v[names.index("message_id")]) for v in w.sink.table.values()}
    assert ids == {"m-0", "m-1", "m-2"}


def test_options_from_settings_drive_a_drain() -> None:
    settings = Settings(
        worker_id="from-settings",
        receive_concurrency=3,
        wait_time_seconds=20,
        batch_max_rows=7,
        batch_max_age=0.05,
        visibility_timeout=60,
        retry_max_backoff=0.05,
        sink=SinkKind.POSTGRES,
        load_concurrency=2,
    )
    opts = pipeline_options(settings, drain=True)
    assert opts.drain is True
    assert opts.wait_time_seconds == DRAIN_POLL_WAIT
    assert pipeline_options(settings).wait_time_seconds == 20
    assert opts.load_concurrency == 2
    assert opts.flush == FlushPolicy(7, settings.batch_max_bytes, 0.05)
    assert opts.backoff.cap == 0.05
    assert opts.heartbeat_interval == 10

    bodies = events(20, seed=5)
    w = world(bodies)
    assert drain(w.pipeline(opts)) is StopReason.DRAINED
    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert w.queue.bodies == []


# -- duplicates ------------------------------------------------------------------------------


def test_duplicates_collapse_to_one_row_each() -> None:
    unique = events(12, seed=2)
    event = orjson.loads(unique[0])
    reordered = orjson.dumps(dict(reversed(list(event.items())))).decode()
    assert reordered != unique[0]
    bodies = [*unique, unique[0], unique[0], unique[5], reordered]
    w = world(bodies)
    pipeline = w.pipeline(options(receive_concurrency=1))
    drain(pipeline)
    assert set(w.sink.table) == {key_of(b) for b in unique}
    assert len(w.sink.table) == 12
    c = pipeline.counters
    assert c.inserted == 12
    assert c.duplicates == 4
    assert c.processed == 16
    assert c.deleted == 16
    assert w.queue.bodies == []


def test_key_already_in_the_target_counts_as_duplicate_and_is_deleted() -> None:
    bodies = events(4, seed=3)
    w = world(bodies)
    w.sink.table[key_of(bodies[2])] = ("loaded earlier",)
    pipeline = w.pipeline(options())
    drain(pipeline)
    assert w.sink.table[key_of(bodies[2])] == ("loaded earlier",)  # not overwritten
    assert pipeline.counters.inserted == 3
    assert pipeline.counters.duplicates_in_target == 1
    assert w.queue.bodies == []


# -- permanent failures ----------------------------------------------------------------------


def test_malformed_messages_go_to_the_dead_letter_target_with_reasons() -> None:
    rng = random.Random(9)
    good = events(15, seed=9)
    bad = {
        malformed(kind, appsflyer_event(rng, 1000 + i)): reason
        for i, (kind, reason) in enumerate(MALFORMED_KINDS)
    }
    bad[""] = FailureReason.EMPTY_BODY
    bad['{"a": "\\u0000"}'] = FailureReason.INVALID_CHARACTER
    bad[S3_NOTIFICATION] = FailureReason.UNSUPPORTED_ENVELOPE
    w = world([*good[:7], *bad, S3_TEST_EVENT, *good[7:]])
    pipeline = w.pipeline(options())
    assert drain(pipeline) is StopReason.DRAINED

    assert w.dlq is not None
    letters = {letter.message.body: letter for letter in w.dlq.letters}
    assert {body: letter.reason for body, letter in letters.items()} == bad
    assert all(letter.detail for letter in letters.values())
    assert set(w.sink.table) == {key_of(b) for b in good}
    assert w.queue.bodies == []  # dead-lettered, ignored and loaded: all deleted
    c = pipeline.counters
    assert c.dead_lettered == Counter(bad.values())
    assert c.deleted == len(good) + len(bad) + 1
    assert c.left_to_redrive == Counter()
    assert c.ignored == 1  # the S3 test event: "deleted, counted" (model.Ignored)


def test_without_a_dead_letter_target_failures_are_left_to_redrive() -> None:
    good = events(6, seed=4)
    bad = ["{oops", "[1]", ""]
    w = world([*good, *bad], dlq=False)
    pipeline = w.pipeline(options(drain=False))

    def settled(p: Pipeline) -> bool:
        return p.counters.inserted == 6 and p.counters.failed == 3 and p.held == 0

    assert run_until(pipeline, settled) is StopReason.SIGNALLED
    c = pipeline.counters
    assert c.left_to_redrive == Counter(
        {
            FailureReason.INVALID_JSON: 1,
            FailureReason.NOT_AN_OBJECT: 1,
            FailureReason.EMPTY_BODY: 1,
        }
    )
    assert c.dead_lettered == Counter()
    assert sorted(w.queue.bodies) == sorted(bad)  # not deleted: the redrive policy moves them
    assert c.deleted == 6
    assert set(w.sink.table) == {key_of(b) for b in good}


def test_rows_rejected_by_the_warehouse_dead_letter_only_the_culprit(
    logs: list[dict[str, object]],
) -> None:
    bodies = events(10, seed=6)
    event = orjson.loads(bodies[3])
    event["campaign"] = "POISON-campaign"
    poison = orjson.dumps(event).decode()
    bodies[3] = poison
    bodies[8] = poison  # its twin in the same batch shares its fate
    w = world(bodies, reject_marker="POISON")
    pipeline = w.pipeline(options(receive_concurrency=1))
    drain(pipeline)

    assert w.dlq is not None
    assert sorted(letter.message.message_id for letter in w.dlq.letters) == ["m-3", "m-8"]
    assert {letter.reason for letter in w.dlq.letters} == {FailureReason.REJECTED_BY_WAREHOUSE}
    expected = {key_of(b) for i, b in enumerate(bodies) if i not in (3, 8)}
    assert set(w.sink.table) == expected
    assert len(expected) == 8
    assert "rejected" in w.sink.outcomes()
    assert set(w.sink.committed_keys.values()) == {1}
    assert w.queue.bodies == []
    assert pipeline.counters.dead_lettered == Counter({FailureReason.REJECTED_BY_WAREHOUSE: 2})
    assert pipeline.counters.inserted == 8
    assert pipeline.breaker.state is CircuitState.CLOSED  # bad data is not an outage
    assert pipeline.counters.load_failures == 0
    rejected = [e for e in logs if e["event"] == "row_rejected"]
    assert [e["message_id"] for e in rejected] == ["m-3"]  # the twin was never loaded


# -- deletes only after commit ---------------------------------------------------------------


def test_messages_are_still_in_the_queue_when_their_load_runs() -> None:
    bodies = events(35, seed=7)
    w = world(bodies)
    seen: list[bool] = []

    async def check(rows: Sequence[MappedRow]) -> None:
        present = set(w.queue.bodies)
        seen.extend(row.message.body in present for row in rows)

    w.sink.before_load = check
    drain(w.pipeline(options()))
    assert len(seen) == 35
    assert all(seen)
    assert w.queue.bodies == []


def test_nothing_is_deleted_while_the_load_fails_transiently() -> None:
    bodies = events(8, seed=8)
    w = world(bodies, fail_next_loads=4)
    deletes_at_load: list[int] = []
    queued_at_load: list[int] = []

    async def record(rows: Sequence[MappedRow]) -> None:
        deletes_at_load.append(w.queue.calls.get("delete", 0))
        queued_at_load.append(len(w.queue.bodies))

    w.sink.before_load = record
    pipeline = w.pipeline(options(receive_concurrency=1))
    drain(pipeline)
    assert w.sink.outcomes()[:5] == ["transient"] * 4 + ["committed"]
    assert deletes_at_load[:5] == [0] * 5
    assert queued_at_load[:5] == [8] * 5
    assert w.queue.bodies == []
    assert set(w.sink.committed_keys.values()) == {1}
    assert pipeline.counters.load_failures == 4


# -- outages ---------------------------------------------------------------------------------


def test_outage_opens_the_circuit_pauses_receiving_then_recovers_exactly_once() -> None:
    bodies = events(60, seed=10)
    failures = 8
    w = world(bodies, fail_next_loads=failures)
    receives_at_load: list[int] = []

    async def record(rows: Sequence[MappedRow]) -> None:
        receives_at_load.append(w.queue.calls.get("receive", 0))

    w.sink.before_load = record
    opts = options(receive_concurrency=4)
    pipeline = w.pipeline(opts)
    assert drain(pipeline) is StopReason.DRAINED

    # While the warehouse failed, receivers stopped: only receives already in flight when
    # the circuit opened may have completed (at most one per receiver).
    during_outage = receives_at_load[failures] - receives_at_load[0]
    assert during_outage <= opts.receive_concurrency, receives_at_load[: failures + 1]

    states = [state for _, state in pipeline.breaker.history]
    assert states[0] is CircuitState.OPEN
    assert CircuitState.HALF_OPEN in states
    assert states[-1] is CircuitState.CLOSED
    assert pipeline.breaker.allows_receiving
    assert pipeline.counters.load_failures == failures

    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert set(w.sink.committed_keys.values()) == {1}
    assert pipeline.counters.inserted == 60
    assert pipeline.counters.deleted == 60
    assert w.queue.bodies == []


def test_stop_during_an_outage_releases_held_messages_within_grace() -> None:
    bodies = events(5, seed=11)
    w = world(bodies, fail_next_loads=10**9)
    opts = options(
        drain=False, receive_concurrency=1, shutdown_grace=1.0, flush=FlushPolicy(5, 10**8, 0.05)
    )
    pipeline = w.pipeline(opts)
    started = time.monotonic()
    reason = run_until(pipeline, lambda p: len(w.sink.calls) >= 3, deadline=10)
    assert reason is StopReason.SIGNALLED
    assert time.monotonic() - started < 10
    assert pipeline.counters.released == 5
    assert pipeline.counters.deleted == 0
    assert w.sink.table == {}
    assert sorted(w.queue.bodies) == sorted(bodies)  # all still there, and visible again

    async def depth() -> int:
        return (await w.queue.depth()).visible

    assert asyncio.run(depth()) == 5


def test_stop_during_an_outage_with_a_second_batch_waiting_honours_the_grace() -> None:
    # One load slot, taken by a batch whose load keeps failing; a second batch is due and
    # waiting for the slot when the stop comes. Shutdown must still end within its grace
    # (and release everything held), not wait for the slot while the warehouse is down.
    bodies = events(5, seed=12)
    w = world(bodies, fail_next_loads=10**9)
    opts = options(
        drain=False,
        receive_concurrency=1,
        max_messages=1,
        flush=FlushPolicy(max_rows=1, max_bytes=10**8, max_age=0.05),
        shutdown_grace=1.0,
    )
    pipeline = w.pipeline(opts)

    async def hold_first_load(rows: Sequence[MappedRow]) -> None:
        if len(w.sink.calls) == 0:
            # Let more messages be received than this load carries: they form the next
            # batch, which becomes due and waits for the one load slot.
            await until(lambda: pipeline.held > len(rows))

    w.sink.before_load = hold_first_load

    async def go() -> StopReason:
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        await until(lambda: len(w.sink.calls) >= 2)
        stop.set()
        try:
            return await asyncio.wait_for(task, opts.shutdown_grace + 4.0)
        except TimeoutError:
            raise AssertionError(
                f"run() still busy {opts.shutdown_grace + 4.0}s after stop "
                f"(shutdown_grace={opts.shutdown_grace})"
            ) from None

    assert asyncio.run(go()) is StopReason.SIGNALLED
    assert pipeline.counters.deleted == 0
    assert pipeline.counters.released == pipeline.counters.received
    assert sorted(w.queue.bodies) == sorted(bodies)


def test_heartbeat_keeps_held_messages_invisible_during_a_slow_load() -> None:
    bodies = events(4, seed=13)
    w = world(bodies)
    opts = options(
        receive_concurrency=1,
        visibility_timeout=1,
        heartbeat_interval=0.1,
        flush=FlushPolicy(max_rows=4, max_bytes=10**8, max_age=0.05),
    )
    pipeline = w.pipeline(opts)

    async def slow(rows: Sequence[MappedRow]) -> None:
        await asyncio.sleep(2.5)  # longer than the visibility timeout, twice over

    w.sink.before_load = slow
    drain(pipeline)
    assert pipeline.counters.visibility_extended > 0
    assert w.queue.calls.get("change_visibility", 0) > 0
    assert pipeline.counters.received == 4  # never redelivered while held
    assert len(w.sink.calls) == 1
    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert w.queue.bodies == []


@pytest.mark.parametrize("concurrency", [1, 3])
def test_held_messages_never_exceed_max_held(concurrency: int) -> None:
    bodies = events(40, seed=14)
    w = world(bodies)
    opts = options(receive_concurrency=concurrency, max_held=10 * concurrency)
    pipeline = w.pipeline(opts)
    peak = 0

    async def watch(rows: Sequence[MappedRow]) -> None:
        nonlocal peak
        peak = max(peak, pipeline.held)

    w.sink.before_load = watch
    drain(pipeline)
    assert peak <= opts.max_held, f"{peak} messages held, max_held={opts.max_held}"
    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert w.queue.bodies == []


def test_drain_flushes_a_partial_batch_once_the_queue_is_empty_not_at_its_age() -> None:
    # Redshift's age bound is tens of seconds: a drain must not wait it out for the last rows.
    w = world(events(25))
    pipeline = w.pipeline(options(flush=FlushPolicy(max_rows=1000, max_bytes=10**8, max_age=600)))
    assert drain(pipeline, deadline=10) is StopReason.DRAINED
    assert len(w.sink.table) == 25 and w.queue.bodies == []
