"""The pipeline over in-memory fakes while the table refuses every row with one error.

Issue 11, item 3: a column's type changed under a running worker made every row fail, and
the loader dead-lettered every valid message. Now nothing is dead-lettered, the circuit
opens (receivers pause), and once the table takes rows again everything loads once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import structlog

from sluice.model import CircuitState, StopReason
from tests.unit.test_pipeline_memory import DEADLINE, events, key_of, options, world


@pytest.fixture
def logs() -> Iterator[list[dict[str, object]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def test_a_table_refusing_every_row_opens_the_circuit_and_dead_letters_nothing(
    logs: list[dict[str, object]],
) -> None:
    bodies = events(60, seed=111)
    # "" is in every value: the sink refuses every load with one error, like a table whose
    # column type no longer takes what the mapping produces.
    w = world(bodies, reject_marker="")
    pipeline = w.pipeline(options(receive_concurrency=2, drain=False))
    assert w.dlq is not None
    seen: dict[str, object] = {}

    def faults() -> int:
        return sum(e["event"] == "table_rejects_rows" for e in logs)

    async def go() -> StopReason:
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        limit = time.monotonic() + DEADLINE
        while faults() < 4:
            assert time.monotonic() < limit and not task.done(), "no table fault seen"
            await asyncio.sleep(0.005)
        seen["circuit"] = pipeline.breaker.state
        seen["received"] = pipeline.counters.received
        seen["letters"] = list(w.dlq.letters) if w.dlq else None
        seen["held"] = pipeline.held
        w.sink.reject_marker = None  # the table is fixed
        while len(w.sink.table) < 60 or pipeline.held:
            assert time.monotonic() < limit and not task.done(), "not loaded after the fix"
            await asyncio.sleep(0.005)
        stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    assert asyncio.run(go()) is StopReason.SIGNALLED

    # While refused: the circuit open, nothing dead-lettered, the messages held.
    assert seen["circuit"] is not CircuitState.CLOSED
    assert seen["letters"] == []
    assert seen["held"] == seen["received"]
    assert 0 < int(str(seen["received"])) < 60  # receivers paused before taking everything
    assert all(e["circuit"] == "open" for e in logs if e["event"] == "table_rejects_rows")
    assert not [e for e in logs if e["event"] == "row_rejected"]
    # Then: every message loaded exactly once and deleted, none dead-lettered.
    assert w.dlq.letters == []
    assert set(w.sink.table) == {key_of(b) for b in bodies}
    assert set(w.sink.committed_keys.values()) == {1}
    assert w.queue.bodies == []
    assert pipeline.counters.inserted == 60
    assert pipeline.counters.failed == 0
    assert pipeline.breaker.state is CircuitState.CLOSED
    assert any(e["event"] == "table_accepts_rows" for e in logs)
