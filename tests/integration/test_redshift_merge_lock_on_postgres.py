"""What a Redshift load blocks, on the PostgreSQL stand-in: readers never, racing writers
never double a key.

PostgreSQL sessions here default to SERIALIZABLE, as a provisioned Redshift database does;
the sink reads that level when it opens and so merges without a LOCK. Two loads that race
for the same keys then meet SQLSTATE 40001 (Redshift: error 1023) and the loser's whole
transaction runs again. To make "the length of a load" measurable, the runner pauses each
load transaction after its merge (``SELECT pg_sleep``), holding whatever the merge locked,
and a reader on another connection counts the target meanwhile under a short lock timeout.
The target has no unique index, as in Redshift: only the merge stands between racing
workers and duplicate rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import psycopg
import pytest

from sluice.mapping import TableMapping, load_mapping
from sluice.sinks.redshift.direct import DirectRunner
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.redshift.sql import MergeLock
from sluice.sinks.sql import POSTGRES
from tests.integration.test_redshift_on_postgres import (
    counts,
    create_unkeyed,
    make_row,
    plain_dsn,
)
from tests.support.worker import wait_for

HOLD = 2.0  # seconds each load transaction stays open after its merge
READER_PATIENCE = "300ms"  # lock_timeout of the reader: far below HOLD


def serializable_dsn(pg_dsn: str) -> str:
    return plain_dsn(pg_dsn) + "&options=-c%20default_transaction_isolation%3Dserializable"


class HoldingRunner:
    """A direct runner whose load transactions pause after the merge, before the DROP."""

    def __init__(self, dsn: str, tag: str) -> None:
        self._inner = DirectRunner(dsn)
        self._pause = f"SELECT pg_sleep({HOLD}) AS {tag}"

    @property
    def requests(self) -> int:
        return self._inner.requests

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]:
        return await self._inner.run([*statements[:-1], self._pause, statements[-1]])

    async def execute(self, sql: str) -> None:
        await self._inner.execute(sql)

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]:
        return await self._inner.query(sql, params)

    async def close(self) -> None:
        await self._inner.close()


def holding_sink(
    pg_dsn: str, table: str, tag: str, lock: MergeLock | None = None
) -> tuple[RedshiftSink, TableMapping]:
    mapping = load_mapping(None, table)
    runner = HoldingRunner(serializable_dsn(pg_dsn), tag)
    return RedshiftSink(runner, mapping, dialect=POSTGRES, merge_lock=lock), mapping


def holding(pg_dsn: str, tag: str) -> bool:
    """Whether a load transaction tagged ``tag`` is in its pause (its merge has run)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'",
            (f"SELECT pg_sleep% AS {tag}",),
        ).fetchone()
    return bool(found and found[0])


def read_count(pg_dsn: str, table: str) -> tuple[int | None, float]:
    """A dashboard's query: (rows, or None when it had to wait on a lock; seconds taken)."""
    started = time.monotonic()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{READER_PATIENCE}'")
        conn.execute("SET statement_timeout = '5s'")
        try:
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        except psycopg.errors.LockNotAvailable:
            return None, time.monotonic() - started
    assert row is not None
    return int(row[0]), time.monotonic() - started


@pytest.mark.parametrize("lock", [None, MergeLock.TRANSACTION])
def test_a_reader_waits_for_a_load_only_when_the_load_locks(
    pg_dsn: str, table_name: str, lock: MergeLock | None
) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> tuple[tuple[int | None, float], MergeLock]:
        sink, mapping = holding_sink(pg_dsn, table_name, "sluice_hold_a", lock)
        try:
            load = asyncio.create_task(sink.load([make_row(mapping, i) for i in range(200)]))
            await asyncio.to_thread(
                wait_for, lambda: holding(pg_dsn, "sluice_hold_a"), 30, "the load's merge"
            )
            seen = await asyncio.to_thread(read_count, pg_dsn, table_name)
            result = await load
            assert result.inserted == 200
            return seen, await sink.merge_lock()
        finally:
            await sink.close()

    (rows, seconds), mode = asyncio.run(go())
    if lock is None:
        # auto on a SERIALIZABLE database: no LOCK, and the reader is answered at once
        # from the last committed snapshot (the load is not committed yet: 0 rows).
        assert mode is MergeLock.NONE
        assert rows == 0
        assert seconds < HOLD / 2
    else:
        # the old behaviour, kept as a setting: the reader would wait out the whole load
        assert mode is MergeLock.TRANSACTION
        assert rows is None
    assert counts(pg_dsn, table_name) == (200, 200)


def test_two_writers_race_without_doubling_a_key_and_never_block_a_reader(
    pg_dsn: str, table_name: str
) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> tuple[int, int, list[tuple[int | None, float]]]:
        first, mapping = holding_sink(pg_dsn, table_name, "sluice_hold_1")
        second, _ = holding_sink(pg_dsn, table_name, "sluice_hold_2")
        try:
            one = asyncio.create_task(first.load([make_row(mapping, i) for i in range(300)]))
            await asyncio.to_thread(
                wait_for, lambda: holding(pg_dsn, "sluice_hold_1"), 30, "the first merge"
            )
            # the second load merges the same keys (and 100 more) while the first,
            # not yet committed, is invisible to it
            two = asyncio.create_task(second.load([make_row(mapping, i) for i in range(400)]))
            await asyncio.to_thread(
                wait_for, lambda: holding(pg_dsn, "sluice_hold_2"), 30, "the second merge"
            )
            seen = [await asyncio.to_thread(read_count, pg_dsn, table_name)]
            results = await asyncio.gather(one, two)
            seen.append(await asyncio.to_thread(read_count, pg_dsn, table_name))
            inserted = sum(r.inserted for r in results)
            return inserted, first.conflict_retries + second.conflict_retries, seen
        finally:
            await first.close()
            await second.close()

    inserted, retries, seen = asyncio.run(go())
    total, distinct = counts(pg_dsn, table_name)
    assert total == distinct == inserted == 400
    assert retries >= 1  # the race was real: one transaction lost it and ran again
    assert all(rows is not None and seconds < HOLD / 2 for rows, seconds in seen), seen
    assert seen[-1][0] == 400
