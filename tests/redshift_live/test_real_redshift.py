"""The Redshift sink against a real Redshift cluster or Serverless workgroup.

Gated: it runs only when REDSHIFT_TEST_* variables name a warehouse (see the README,
"Testing against a real Redshift"); without them every test here is skipped with the reason
shown by ``pytest -ra``. Nothing else in the suite can stand in for it: moto runs no SQL,
and PostgreSQL runs only the statements both dialects share (not COPY from S3, SUPER or
JSON_PARSE).

    REDSHIFT_TEST_DATABASE            required
    REDSHIFT_TEST_CLUSTER_IDENTIFIER  with REDSHIFT_TEST_DB_USER (provisioned), or
    REDSHIFT_TEST_WORKGROUP           (Serverless)
    REDSHIFT_TEST_REGION              default us-east-1
    REDSHIFT_TEST_S3_STAGING_URI      with REDSHIFT_TEST_IAM_ROLE: also test the copy path
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import orjson
import pytest

from sluice.config import Settings, load_settings
from sluice.mapping import TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.redshift.build import build_redshift_sink
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.sql import REDSHIFT_MAX_VARCHAR, quote

ENV = os.environ
TARGET_SET = "REDSHIFT_TEST_DATABASE" in ENV and (
    "REDSHIFT_TEST_WORKGROUP" in ENV
    or {"REDSHIFT_TEST_CLUSTER_IDENTIFIER", "REDSHIFT_TEST_DB_USER"} <= set(ENV)
)
COPY_SET = {"REDSHIFT_TEST_S3_STAGING_URI", "REDSHIFT_TEST_IAM_ROLE"} <= set(ENV)
NO_TARGET = (
    "needs REDSHIFT_TEST_DATABASE and REDSHIFT_TEST_CLUSTER_IDENTIFIER + "
    "REDSHIFT_TEST_DB_USER (or REDSHIFT_TEST_WORKGROUP) set; cannot run without an "
    "AWS account and a Redshift warehouse"
)
pytestmark = pytest.mark.skipif(not TARGET_SET, reason=NO_TARGET)
PATHS = [
    "insert",
    pytest.param(
        "copy",
        marks=pytest.mark.skipif(
            not (TARGET_SET and COPY_SET),
            reason=NO_TARGET
            if not TARGET_SET
            else "the copy path also needs REDSHIFT_TEST_S3_STAGING_URI and "
            "REDSHIFT_TEST_IAM_ROLE set",
        ),
    ),
]


def settings_for(path: str, table: str) -> Settings:
    env = {
        "SLUICE_SINK": "redshift",
        "REDSHIFT_TABLE_NAME": table,
        "REDSHIFT_DATABASE": ENV["REDSHIFT_TEST_DATABASE"],
        "AWS_REGION": ENV.get("REDSHIFT_TEST_REGION", "us-east-1"),
        "SLUICE_REDSHIFT_LOAD_PATH": path,
        "WORKER_ID": "sluice-live-test",
    }
    for name, var in (
        ("REDSHIFT_CLUSTER_IDENTIFIER", "REDSHIFT_TEST_CLUSTER_IDENTIFIER"),
        ("REDSHIFT_DB_USER", "REDSHIFT_TEST_DB_USER"),
        ("SLUICE_REDSHIFT_WORKGROUP", "REDSHIFT_TEST_WORKGROUP"),
        ("SLUICE_S3_STAGING_URI", "REDSHIFT_TEST_S3_STAGING_URI"),
        ("SLUICE_REDSHIFT_IAM_ROLE", "REDSHIFT_TEST_IAM_ROLE"),
    ):
        if var in ENV:
            env[name] = ENV[var]
    return load_settings(env)


def rows_for(mapping: TableMapping, keys: range, *, note: str = "it's \\ ü 😀") -> list[MappedRow]:
    rows = []
    for i in keys:
        event = {
            "appsflyer_id": f"af-{i}",
            "event_name": note,
            "event_time": "2024-05-01 12:34:56.789",
            "event_value": {"af_revenue": "1.5", "note": note},
            "event_revenue": "12.345678",
            "is_retargeting": "true",
        }
        body = orjson.dumps(event).decode()
        rows.append(mapping.map_event(event, body, ReceivedMessage(f"m{i}", "r", body, 1, 0)))
    return rows


@pytest.fixture(params=PATHS)
def live(request: pytest.FixtureRequest) -> Iterator[tuple[Settings, TableMapping]]:
    table = f"sluice_test_{uuid.uuid4().hex[:10]}"
    settings = settings_for(request.param, table)
    mapping = load_mapping(None, table).with_text_limit(REDSHIFT_MAX_VARCHAR)

    async def create() -> None:
        sink = build_redshift_sink(settings, mapping)
        try:
            await sink.open()
            assert await sink.create_table()
            await sink.check_schema()
        finally:
            await sink.close()

    asyncio.run(create())
    yield settings, mapping

    async def drop() -> None:
        sink = build_redshift_sink(settings, mapping)
        try:
            await sink.runner.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        finally:
            await sink.close()

    asyncio.run(drop())


async def counts(sink: RedshiftSink, table: str) -> tuple[int, int]:
    [(total, distinct)] = await sink.runner.query(
        f"SELECT count(*), count(DISTINCT dedupe_key) FROM {quote(table)}"
    )
    return int(str(total)), int(str(distinct))


def test_loads_once_and_absorbs_redelivery(live: tuple[Settings, TableMapping]) -> None:
    settings, mapping = live

    async def go() -> None:
        sink = build_redshift_sink(settings, mapping)
        try:
            first = await sink.load(rows_for(mapping, range(500)))
            assert first.inserted == 500
            again = await sink.load(rows_for(mapping, range(400, 600)))
            assert (again.inserted, again.already_present) == (100, 100)
            assert await counts(sink, mapping.table) == (600, 600)
            [(note,)] = await sink.runner.query(
                f"SELECT event_value.note::VARCHAR FROM {quote(mapping.table)} "
                "WHERE appsflyer_id = 'af-1'"
            )
            assert note == "it's \\ ü 😀"  # SUPER navigation: nested JSON, not a string
        finally:
            await sink.close()

    asyncio.run(go())


def test_racing_loads_never_double_a_key(live: tuple[Settings, TableMapping]) -> None:
    settings, mapping = live

    async def go() -> None:
        sinks = [build_redshift_sink(settings, mapping) for _ in range(3)]
        try:
            await asyncio.gather(
                *(
                    s.load(rows_for(mapping, range(n * 50, n * 50 + 200)))
                    for n, s in enumerate(sinks)
                )
            )
            assert await counts(sinks[0], mapping.table) == (300, 300)
        finally:
            for sink in sinks:
                await sink.close()

    asyncio.run(go())
