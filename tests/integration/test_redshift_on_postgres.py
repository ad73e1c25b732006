"""The Redshift sink's statements, run on PostgreSQL 15 wherever the two dialects agree.

The staging DDL, the multi-row INSERTs and their literals, LOCK and the merge are the same
text for both (only type names and literal prefixes differ, by ``Dialect``); here they run
through the sink's direct-connection runner. The target is created without its primary
key, as Redshift would have it (its keys are not enforced), so only LOCK + NOT EXISTS stand
between racing workers and duplicate rows.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.errors import SchemaError, TransientError
from sluice.mapping import TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.redshift.direct import DirectRunner
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.redshift.sql import string_literal
from sluice.sinks.sql import POSTGRES

HOSTILE = [
    "it's",
    "back\\slash \\' \\\\ \\n",
    "'; DROP TABLE x; --",
    "%s %(p1)s :p1 $1 ?",
    "ünïcødé 😀 \u2028 \t\r\n",
    "E'x'",
    "",
]


def plain_dsn(dsn: str) -> str:
    return dsn + ("&" if "?" in dsn else "?") + "sslmode=disable"


def make_row(mapping: TableMapping, i: int, *, text: str = "x", message_id: str = "") -> MappedRow:
    event = {
        "appsflyer_id": f"af-{i}",
        "event_name": text,
        "event_time": "2024-05-01 12:34:56.789",
        "event_value": {"af_revenue": "1.5", "note": text},
        "event_revenue": "12.345678",
        "is_retargeting": "true",
        "campaign": text,
    }
    body = orjson.dumps(event).decode()
    message = ReceivedMessage(message_id or f"m-{i:06}", "rh", body, 1, 1_714_566_896_789)
    return mapping.map_event(event, body, message)


def sink_for(pg_dsn: str, table: str, connections: int = 1) -> tuple[RedshiftSink, TableMapping]:
    mapping = load_mapping(None, table)
    runner = DirectRunner(plain_dsn(pg_dsn), connections=connections)
    return RedshiftSink(runner, mapping, dialect=POSTGRES, max_statement_bytes=20_000), mapping


def create_unkeyed(pg_dsn: str, table: str) -> None:
    async def go() -> None:
        sink, _ = sink_for(pg_dsn, table)
        try:
            assert await sink.create_table() is True
            await sink.check_schema()
        finally:
            await sink.close()

    asyncio.run(go())
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_pkey"')


def counts(pg_dsn: str, table: str) -> tuple[int, int]:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT count(*), count(DISTINCT dedupe_key) FROM "{table}"').fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_merge_inserts_new_keys_once_and_skips_known_ones(pg_dsn: str, table_name: str) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> None:
        sink, mapping = sink_for(pg_dsn, table_name)
        try:
            rows = [make_row(mapping, i) for i in range(300)]  # several INSERTs and transactions
            first = await sink.load(rows)
            assert (first.inserted, first.already_present) == (300, 0)
            again = await sink.load([*rows[:100], make_row(mapping, 1000)])
            assert (again.inserted, again.already_present) == (1, 100)
            assert sink.statements > 5  # the 20 KB statement limit split the batch
        finally:
            await sink.close()

    asyncio.run(go())
    assert counts(pg_dsn, table_name) == (301, 301)


def test_duplicates_inside_one_batch_collapse_to_the_lowest_message_id(
    pg_dsn: str, table_name: str
) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> None:
        sink, mapping = sink_for(pg_dsn, table_name)
        try:
            rows = [make_row(mapping, 7, message_id=m) for m in ("m-b", "m-a", "m-c")]
            result = await sink.load(rows)
            assert result.inserted == 1
        finally:
            await sink.close()

    asyncio.run(go())
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute(f'SELECT message_id FROM "{table_name}"').fetchall()
    assert found == [("m-a",)]


def test_values_round_trip_through_the_literals(pg_dsn: str, table_name: str) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> None:
        sink, mapping = sink_for(pg_dsn, table_name)
        try:
            await sink.load([make_row(mapping, i, text=t) for i, t in enumerate(HOSTILE)])
        finally:
            await sink.close()

    asyncio.run(go())
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute(
            f"SELECT campaign, event_value->>'note', event_time, event_revenue, is_retargeting, "
            f"raw_event->>'campaign' FROM \"{table_name}\" ORDER BY message_id"
        ).fetchall()
    assert [r[0] for r in found] == HOSTILE
    assert [r[1] for r in found] == HOSTILE
    assert [r[5] for r in found] == HOSTILE
    assert found[0][2] == datetime(2024, 5, 1, 12, 34, 56, 789000)
    assert found[0][3] == Decimal("12.345678")
    assert found[0][4] is True


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"])))
def test_any_text_survives_string_literal(pg_dsn: str, text: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute("SELECT " + string_literal(POSTGRES, text)).fetchone()
    assert found == (text,)


def test_racing_workers_never_double_a_key_without_a_unique_index(
    pg_dsn: str, table_name: str
) -> None:
    create_unkeyed(pg_dsn, table_name)

    async def go() -> int:
        sinks = [sink_for(pg_dsn, table_name) for _ in range(4)]
        mapping = sinks[0][1]
        try:
            # every worker loads an overlapping window of the same 400 keys, twice over
            jobs = [
                sink.load([make_row(mapping, i) for i in range(start, start + 200)])
                for round_ in range(2)
                for n, (sink, _) in enumerate(sinks)
                for start in [(n * 70 + round_ * 30) % 200]
            ]
            results = await asyncio.gather(*jobs)
            return sum(r.inserted for r in results)
        finally:
            for sink, _ in sinks:
                await sink.close()

    inserted = asyncio.run(go())
    total, distinct = counts(pg_dsn, table_name)
    assert total == distinct == inserted


def test_check_schema_names_a_missing_table(pg_dsn: str, table_name: str) -> None:
    async def go() -> None:
        sink, _ = sink_for(pg_dsn, table_name)
        try:
            with pytest.raises(SchemaError, match="does not exist"):
                await sink.check_schema()
        finally:
            await sink.close()

    asyncio.run(go())


def test_the_direct_connection_verifies_tls_unless_told_otherwise(pg_dsn: str) -> None:
    # The test server speaks no TLS: with the default sslmode=verify-full it must refuse.
    async def go() -> None:
        runner = DirectRunner(pg_dsn)
        try:
            with pytest.raises(TransientError, match=r"(?i)ssl|tls|certificate|root"):
                await runner.query("SELECT 1")
        finally:
            await runner.close()

    asyncio.run(go())
