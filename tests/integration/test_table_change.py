"""A column's type changed under a running worker: nothing valid is dead-lettered.

Issue 11, item 3. ``ALTER COLUMN platform TYPE integer`` makes every AppsFlyer row fail
with a class-22 error (22P02: "ios" is not an integer). The worker must hold the messages
with its circuit open, not dead-letter them; once the column is altered back, every one
loads exactly once. A real worker process, the emulator and PostgreSQL; then the same with
an embedded DuckDB file and the Loader in this process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import structlog

from sluice.decode import decode_message
from sluice.loading import Loader
from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.model import CircuitState, MappedRow, ReceivedMessage
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff
from sluice.sinks.duckdb import DuckDBSink
from sluice.tools.checker import Sent, check, key_function
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import has_event, log_events
from tests.support.worker import init_db, start_worker, wait_for, worker_env

COLUMN = "platform"  # text in the mapping; every synthetic event has "ios" or "android"


def _events(log: str, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(log) if e.get("event") == name]


def test_column_type_changed_mid_run_holds_messages_then_loads_them_once(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    plan = list(synthetic_stream(300, malformed_ratio=0, duplicate_ratio=0, seed=113))
    before, during = plan[:50], plan[50:]
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"SLUICE_STATS_INTERVAL": "1", "SLUICE_RETRY_MAX_BACKOFF": "1"},
    )
    init_db(env)

    def alter(sql_type: str) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f'ALTER TABLE "{table_name}" ALTER COLUMN "{COLUMN}" TYPE {sql_type} USING NULL'
            )

    def rows() -> dict[str, int]:
        with psycopg.connect(pg_dsn) as conn:
            found = conn.execute(f'SELECT dedupe_key, count(*) FROM "{table_name}" GROUP BY 1')
            return {str(k): int(n) for k, n in found.fetchall()}

    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: has_event(worker.log, "started"), 45, "the worker to start", step=0.2)
        # A first part loads normally, so the worker's session has its staging table made
        # with the old column type when the table changes.
        sqs.send(queues.endpoint, queues.url, (m.body for m in before))
        wait_for(lambda: sum(rows().values()) == 50, 30, "the first 50 loaded", step=0.2)

        alter("integer")
        sqs.send(queues.endpoint, queues.url, (m.body for m in during))
        wait_for(
            lambda: len(_events(worker.log, "table_rejects_rows")) >= 3,
            30,
            "the worker to find the table at fault",
            step=0.2,
        )
        # Broken for a while (several retries, past the 6 s visibility timeout): nothing
        # loads, nothing is dead-lettered, the worker stays up with its circuit open.
        broken_until = time.monotonic() + 8
        while time.monotonic() < broken_until:
            assert worker.process.poll() is None, worker.log[-3000:]
            assert sqs.depth(queues.endpoint, queues.dlq_url).total == 0, worker.log[-3000:]
            time.sleep(0.5)  # a sampling period, not a wait for something to happen
        assert sum(rows().values()) == 50
        faults = _events(worker.log, "table_rejects_rows")
        stats = _events(worker.log, "stats")[-1]

        alter("varchar(32)")
        wait_for(
            lambda: (
                sum(rows().values()) == 300 and sqs.depth(queues.endpoint, queues.url).total == 0
            ),
            120,  # generous: on a loaded 2-core machine 60 s was seen to be too short
            "all 300 loaded after the column was altered back",
            step=0.5,
        )
        worker.signal()
        assert worker.wait(timeout=30) == 0, worker.log[-3000:]
    finally:
        worker.kill()

    assert len(faults) >= 3
    assert all(e["circuit"] == "open" for e in faults), faults
    assert all(e["error"].startswith("22P02 ") for e in faults), faults  # class 22
    assert any("platform is integer" in e["schema"] for e in faults), faults  # check_schema
    assert not any("ios" in str(e) or "android" in str(e) for e in faults)  # no values
    assert stats["messagesHeld"] > 0 and stats["deadLettered"] == {}, stats
    assert not _events(worker.log, "row_rejected")
    assert has_event(worker.log, "table_accepts_rows")
    report = check(
        (Sent(m.body, True) for m in plan),
        rows(),
        sqs.dlq_bodies(queues.endpoint, queues.dlq_url),
        sqs.depth(queues.endpoint, queues.url).total,
        key_function(load_mapping(None, table_name)),
        min_messages=300,
    )
    assert report.ok, report.summary()


def test_duckdb_column_type_changed_holds_the_batch_until_altered_back(tmp_path: Path) -> None:
    path = str(tmp_path / "t.duckdb")
    mapping = load_mapping(None, "events")
    plan = synthetic_stream(60, malformed_ratio=0, duplicate_ratio=0, seed=114)
    decoded = [
        decode_message(ReceivedMessage(f"m-{i}", f"r-{i}", m.body, 1, 0), mapping)
        for i, m in enumerate(plan)
    ]
    rows = [row for row in decoded if isinstance(row, MappedRow)]
    assert len(rows) == 60

    async def go() -> tuple[int, int, list[CircuitState]]:
        sink = DuckDBSink(path, mapping)
        await sink.open()
        await sink.create_table()
        other = duckdb.connect(path)  # the same database instance, as a DBA's session
        other.execute(f'ALTER TABLE events ALTER "{COLUMN}" TYPE INTEGER USING NULL')
        breaker = CircuitBreaker(time.monotonic)

        async def nothing() -> None:
            return None

        loader = Loader(
            sink,
            breaker=breaker,
            backoff=ExponentialBackoff(base=0.01, cap=0.05, floor=0.01),
            counters=WorkerCounters(),
            log=structlog.get_logger("test"),
            on_circuit_change=nothing,
            clock=time.monotonic,
        )
        task = asyncio.create_task(loader.load(rows))
        limit = time.monotonic() + 20
        while loader.counters.load_failures < 3:
            assert time.monotonic() < limit and not task.done(), "no table fault"
            await asyncio.sleep(0.01)
        states = [breaker.state]
        other.execute(f'ALTER TABLE events ALTER "{COLUMN}" TYPE VARCHAR USING NULL')
        result, dead = await asyncio.wait_for(task, 20)
        other.close()
        await sink.close()
        return result.inserted, len(dead), states

    with structlog.testing.capture_logs():
        inserted, dead, states = asyncio.run(go())
    assert (inserted, dead) == (60, 0)
    assert states[0] is not CircuitState.CLOSED
    with duckdb.connect(path) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (60,)
