"""One contract for every Sink: the in-memory twin, DuckDB, PostgreSQL, and the Redshift sink
on PostgreSQL through its direct runner and through a Data API client that runs SQL.

create the table, then find it already there; a load counts what it inserted; loading the same
batch again is a no-op; a row the warehouse cannot store raises RowsRejectedError and leaves the
table as it was; a missing table is a SchemaError.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest

from sluice.errors import SchemaError
from sluice.mapping import TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.base import RowsRejectedError, Sink
from sluice.sinks.duckdb import DuckDBSink
from sluice.sinks.memory import MemorySink
from sluice.sinks.postgres import PostgresSink
from sluice.sinks.redshift.data_api import DataApiRunner, DataApiTarget
from sluice.sinks.redshift.direct import DirectRunner
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.sql import POSTGRES
from tests.support.data_api_postgres import PostgresDataApi

KINDS = ["memory", "duckdb", "postgres", "redshift-direct", "redshift-data-api"]
DEADLINE = 60.0

Factory = Callable[[], AbstractAsyncContextManager[Sink]]


def plain_dsn(dsn: str) -> str:
    return dsn + ("&" if "?" in dsn else "?") + "sslmode=disable"


@pytest.fixture(params=KINDS)
def mapping_and_sink(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[TableMapping, Factory]:
    kind: str = request.param
    if kind in ("memory", "duckdb"):
        mapping = load_mapping(None, "events")
    else:
        mapping = load_mapping(None, request.getfixturevalue("table_name"))

    @asynccontextmanager
    async def make() -> AsyncIterator[Sink]:
        sink: Sink
        data_api: PostgresDataApi | None = None
        if kind == "memory":
            sink = MemorySink(mapping=mapping, table_exists=False)
        elif kind == "duckdb":
            sink = DuckDBSink(str(tmp_path / "contract.duckdb"), mapping)
        else:
            dsn: str = request.getfixturevalue("pg_dsn")
            if kind == "postgres":
                sink = PostgresSink(dsn, mapping, application_name="sluice-contract")
            elif kind == "redshift-direct":
                runner = DirectRunner(plain_dsn(dsn), connections=1)
                sink = RedshiftSink(runner, mapping, dialect=POSTGRES, max_statement_bytes=20_000)
            else:
                data_api = PostgresDataApi(dsn)

                async def client() -> PostgresDataApi:
                    return data_api  # type: ignore[return-value]

                target = DataApiTarget("test", cluster_identifier="c", db_user="u")
                sink = RedshiftSink(
                    DataApiRunner(client, target),  # type: ignore[arg-type]
                    mapping,
                    dialect=POSTGRES,
                    max_statement_bytes=20_000,
                )
        await sink.open()
        try:
            yield sink
        finally:
            await sink.close()
            if data_api is not None:
                await data_api.close()

    return mapping, make


def rows(mapping: TableMapping, count: int, **changes: object) -> list[MappedRow]:
    out = []
    for i in range(count):
        event = {
            "appsflyer_id": f"af-{i}",
            "event_name": "af_purchase",
            "event_time": "2024-05-01 12:34:56.789",
            "event_revenue": "12.345678",
            "campaign": "it's \\ a 'test' 😀",
        }
        body = orjson.dumps(event).decode()
        message = ReceivedMessage(f"m-{i}", f"h-{i}", body, 1, 1_714_566_896_789)
        row = mapping.map_event(event, body, message)
        if changes:
            values = list(row.values)
            for name, value in changes.items():
                index = [c.name for c in mapping.load_columns].index(name)
                values[index] = value
            row = MappedRow(row.message, row.dedupe_key, tuple(values))
        out.append(row)
    return out


def run(factory: Factory, work: Callable[[Sink], Awaitable[None]]) -> None:
    async def go() -> None:
        async with factory() as sink:
            await asyncio.wait_for(work(sink), DEADLINE)

    asyncio.run(go())


def test_create_the_table_then_find_it_there(
    mapping_and_sink: tuple[TableMapping, Factory],
) -> None:
    _, factory = mapping_and_sink

    async def work(sink: Sink) -> None:
        assert await sink.create_table() is True
        await sink.check_schema()
        assert await sink.create_table() is False
        await sink.check_schema()

    run(factory, work)


def test_a_table_the_sink_made_needs_no_change(
    mapping_and_sink: tuple[TableMapping, Factory],
) -> None:
    _, factory = mapping_and_sink

    async def work(sink: Sink) -> None:
        await sink.create_table()
        plan = await sink.plan_schema()
        assert plan.matches, plan
        await sink.apply_schema(plan)  # nothing to do, and doing it is harmless

    run(factory, work)


def test_a_missing_table_is_a_schema_error(
    mapping_and_sink: tuple[TableMapping, Factory],
) -> None:
    mapping, factory = mapping_and_sink

    async def work(sink: Sink) -> None:
        with pytest.raises(SchemaError):
            await sink.check_schema()
        with pytest.raises(SchemaError):
            await sink.plan_schema()
        with pytest.raises(SchemaError):
            await sink.load(rows(mapping, 2))

    run(factory, work)


def test_a_load_counts_and_reloading_it_is_a_no_op(
    mapping_and_sink: tuple[TableMapping, Factory],
) -> None:
    mapping, factory = mapping_and_sink
    batch = rows(mapping, 25)

    async def work(sink: Sink) -> None:
        await sink.create_table()
        first = await sink.load(batch)
        assert (first.inserted, first.already_present) == (25, 0)
        again = await sink.load(batch)
        assert (again.inserted, again.already_present) == (0, 25)
        overlap = await sink.load([*batch[:5], *rows(mapping, 30)[25:]])
        assert (overlap.inserted, overlap.already_present) == (5, 5)
        assert await sink.count_rows() == 30

    run(factory, work)


def test_a_dropped_table_is_gone(mapping_and_sink: tuple[TableMapping, Factory]) -> None:
    mapping, factory = mapping_and_sink

    async def work(sink: Sink) -> None:
        await sink.create_table()
        await sink.load(rows(mapping, 3))
        await sink.drop_table()
        with pytest.raises(SchemaError):
            await sink.check_schema()
        assert await sink.create_table() is True
        assert await sink.count_rows() == 0

    run(factory, work)


@pytest.mark.parametrize(
    "change",
    [
        {"event_revenue": Decimal("1000000000000000.5")},  # past DECIMAL(20,6)
        {"appsflyer_id": "x" * 200},  # past the column's 128 bytes
    ],
    ids=["decimal overflow", "text too long"],
)
def test_a_row_the_warehouse_cannot_store_is_rejected_and_nothing_is_loaded(
    mapping_and_sink: tuple[TableMapping, Factory], change: dict[str, object]
) -> None:
    mapping, factory = mapping_and_sink
    good = rows(mapping, 3)
    (bad,) = rows(mapping, 4, **change)[3:]

    async def work(sink: Sink) -> None:
        await sink.create_table()
        with pytest.raises(RowsRejectedError):
            await sink.load([*good, bad])
        result = await sink.load(good)  # nothing of the refused load went in
        assert (result.inserted, result.already_present) == (3, 0)

    run(factory, work)


def test_contract_tables_are_real_tables(pg_dsn: str, table_name: str) -> None:
    """The PostgreSQL-backed twins really write: a guard against a contract that passes
    against nothing."""
    mapping = load_mapping(None, table_name)

    async def go() -> None:
        data_api = PostgresDataApi(pg_dsn)

        async def client() -> PostgresDataApi:
            return data_api

        sink = RedshiftSink(
            DataApiRunner(client, DataApiTarget("test", cluster_identifier="c", db_user="u")),  # type: ignore[arg-type]
            mapping,
            dialect=POSTGRES,
            max_statement_bytes=20_000,
        )
        await sink.open()
        await sink.create_table()
        await sink.load(rows(mapping, 7))
        await sink.close()
        await data_api.close()

    asyncio.run(go())
    with psycopg.connect(pg_dsn) as conn:
        count = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert count == (7,)
