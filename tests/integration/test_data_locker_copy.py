"""COPY of a Data Locker CSV object from S3, run on the Redshift-on-PostgreSQL stand-in.

The statements of ``sinks/redshift/object_copy.py`` run on PostgreSQL 15 through the Data API
runner and ``tests/support/data_api_postgres.py``, which runs Redshift's ``COPY ... FROM
'<manifest>' MANIFEST CSV GZIP`` by reading the manifest the sink staged in the emulator's
S3 (fauxqs) and loading the objects it names with PostgreSQL's CSV COPY. What is checked: a
row has the same dedupe key, values and raw_event on both paths (so an object loaded by one
and then the other adds nothing); a row outside the plain form aborts the COPY transaction
whole and the object loader then streams the object, reporting that row alone; an object
whose key extends the announced one's (``<key>.tmp``) is not loaded with it; a manifest
naming a missing object fails the COPY as Redshift's does; the manifest is deleted after
every COPY, committed or failed. Not checked here, because only Redshift runs it: SHA2 /
JSON_PARSE / VARCHAR(65535) (the PostgreSQL spellings are used), COPY's own CSV reader and
manifest parser, IAM_ROLE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from sluice.errors import SluiceError
from sluice.loading import Loader
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.mapping import load_mapping
from sluice.model import ObjectRef, ObjectsAnnounced, ReceivedMessage
from sluice.objects.csvstream import CsvRecords, Record
from sluice.objects.loader import ObjectLoader
from sluice.objects.report import ErrorReport
from sluice.objects.rows import map_record
from sluice.objects.s3read import S3ObjectReader
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff
from sluice.sinks.redshift.data_api import DataApiRunner, DataApiTarget
from sluice.sinks.redshift.object_copy import CopyForm, CsvObject
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.redshift.staging import S3Stager, StagingLocation
from sluice.sinks.sql import POSTGRES
from sluice.sources.memory import MemoryDeadLetters
from sluice.tools.data_locker import HEADER, gzip_csv, synth_rows
from tests.support import s3
from tests.support.data_api_postgres import PostgresDataApi

ROLE = "arn:aws:iam::123456789012:role/sluice-copy"
MAPPING = "appsflyer_data_locker"
NOTE = ReceivedMessage("n-1", "h", "{}", 1, 1_714_566_896_789)
HOSTILE = [
    'quote " and \\ backslash',
    "new\nline, tab\t, return\r end",
    "ünïcødé 😀 \u2028 it's",
    "",
    "{not json",
    "'; DROP TABLE x; --",
]


def hostile_rows(count: int, seed: int) -> list[dict[str, str]]:
    rows = list(synth_rows(count, seed=seed))
    for i, row in enumerate(rows):
        row["Campaign"] = HOSTILE[i % len(HOSTILE)]
        row["User Agent"] = HOSTILE[(i + 1) % len(HOSTILE)]
    return rows


def python_rows(rows: list[dict[str, str]], ref: ObjectRef) -> list[Any]:
    mapping = load_mapping(MAPPING, "t")
    csv = CsvRecords()
    parsed = [r for piece in csv.feed(gzip_csv(rows)) for r in piece] + csv.finish()
    return [map_record(mapping, NOTE, 0, ref, r) for r in parsed if isinstance(r, Record)]


class Stand:
    """The sink on the stand-in, its S3 client, and the object loader, in one loop."""

    def __init__(self, emulator: Emulator, dsn: str, table: str) -> None:
        self.endpoint = emulator.endpoint
        self.dsn = dsn
        self.mapping = load_mapping(MAPPING, table)
        # The sink's S3 staging, where each object COPY's manifest is written.
        self.staging = StagingLocation(s3.make_bucket(emulator.endpoint), "sluice-staging")

    async def run(self, work: Callable[[Stand], Awaitable[Any]]) -> Any:
        config = AioConfig(s3={"addressing_style": "path"})
        async with get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            config=config,
            **EMULATOR_CREDENTIALS,
        ) as client:

            async def s3_client() -> Any:
                return client

            self.data_api = PostgresDataApi(self.dsn, s3=s3_client)

            async def data_client() -> PostgresDataApi:
                return self.data_api

            target = DataApiTarget("test", cluster_identifier="c", db_user="u")
            # Batches load by INSERT (the stand-in runs no JSON COPY); objects COPY through
            # manifests in the staging bucket.
            self.stager = S3Stager(s3_client, self.staging, "w-1")
            self.sink = RedshiftSink(
                DataApiRunner(data_client, target),  # type: ignore[arg-type]
                self.mapping,
                object_stager=self.stager,
                iam_role=ROLE,
                dialect=POSTGRES,
            )
            self.dead = MemoryDeadLetters()
            log = structlog.get_logger("test")
            self.objects = ObjectLoader(
                S3ObjectReader(s3_client),
                self.mapping,
                ErrorReport(self.dead, log),
                log,
                copy_from_s3=True,
            )

            async def nothing() -> None:
                return None

            self.loader = Loader(
                self.sink,
                breaker=CircuitBreaker(time.monotonic),
                backoff=ExponentialBackoff(base=0.01, cap=0.05),
                counters=WorkerCounters(),
                log=log,
                on_circuit_change=nothing,
                clock=time.monotonic,
            )
            try:
                await self.sink.open()
                await self.sink.create_table()
                return await work(self)
            finally:
                await self.sink.close()
                await self.data_api.close()

    async def announce(self, *refs: ObjectRef) -> Any:
        return await self.objects(ObjectsAnnounced(NOTE, refs), self.loader)


COLUMNS = (
    "appsflyer_id",
    "event_name",
    "event_time",
    "event_value",
    "event_revenue",
    "campaign",
    "install_time",
    "is_retargeting",
    "raw_event",
    "message_id",
)


def table_rows(dsn: str, table: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f'SELECT dedupe_key, {", ".join(COLUMNS)} FROM "{table}"').fetchall()
    return {str(row[0]): tuple(row[1:]) for row in found}


def put_object(
    emulator: Emulator, rows: list[dict[str, str]], key: str, bucket: str | None = None
) -> ObjectRef:
    bucket = bucket or s3.make_bucket(emulator.endpoint)
    body = gzip_csv(rows)
    etag = s3.put(emulator.endpoint, bucket, key, body)
    return ObjectRef(bucket, key, len(body), etag)


def staged_keys(emulator: Emulator, stand: Stand) -> list[str]:
    """What is left in the sink's staging bucket."""

    async def work(client: Any) -> list[str]:
        found = await client.list_objects_v2(Bucket=stand.staging.bucket)
        return [str(item["Key"]) for item in found.get("Contents", [])]

    return s3.with_s3(emulator.endpoint, work)


def test_copy_keys_and_values_equal_the_streaming_paths_and_reloading_adds_nothing(
    emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    rows = hostile_rows(3_000, seed=41)
    ref = put_object(emulator, rows, "t=inapps/dt=2024-05-01/h=1/part-0.csv.gz")
    stand = Stand(emulator, pg_dsn, table_name)

    async def work(stand: Stand) -> tuple[Any, Any, int]:
        settled = await stand.announce(ref)
        copies = stand.data_api.copies
        again = await stand.loader.load(python_rows(rows, ref))  # the streaming path's rows
        return settled, again, copies

    settled, again, copies = asyncio.run(stand.run(work))
    assert copies == 1  # loaded by COPY, not streamed
    assert stand.data_api.copied_urls == [ref.url]
    # ping, the manifest's PutObject, its DeleteObjects: written, then removed
    assert stand.stager.requests == 3 and stand.stager.bytes_staged > 0
    assert staged_keys(emulator, stand) == []
    assert (settled.inserted, settled.rows_failed, settled.dead) == (3_000, 0, None)
    assert (again.result.inserted, again.result.already_present) == (0, 3_000)

    found = table_rows(pg_dsn, table_name)
    expected = python_rows(rows, ref)
    assert sorted(found) == sorted(row.dedupe_key for row in expected)
    names = [c.name for c in stand.mapping.load_columns]
    for row in expected:
        values = dict(zip(names, row.values, strict=True))
        got = dict(zip(COLUMNS, found[row.dedupe_key], strict=True))
        for name in ("appsflyer_id", "event_name", "event_time", "event_revenue", "campaign"):
            assert got[name] == values[name], name
        assert got["install_time"] == values["install_time"]
        assert got["is_retargeting"] == values["is_retargeting"]
        assert got["event_value"] == orjson.loads(str(values["event_value"]))
        assert got["raw_event"] == orjson.loads(str(values["raw_event"]))
        assert got["message_id"] == "n-1#0:copy"


def test_a_row_outside_the_plain_form_streams_the_object_and_is_reported_alone(
    emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    rows = hostile_rows(2_000, seed=42)
    rows[1234]["Event Time"] = "2024-05-01T12:00:00+02:00"  # Python converts it; SQL does not
    rows[77]["Event Time"] = "not a time"  # fits neither path
    ref = put_object(emulator, rows, "t=inapps/dt=2024-05-01/h=2/part-0.csv.gz")
    missing = ObjectRef(ref.bucket, "t=inapps/dt=2024-05-01/h=2/gone.csv.gz")

    async def work(stand: Stand) -> tuple[Any, Any, int]:
        settled = await stand.announce(ref)
        copies = stand.data_api.copies
        gone = await stand.announce(missing)
        return settled, gone, copies

    stand = Stand(emulator, pg_dsn, table_name)
    settled, gone, copies = asyncio.run(stand.run(work))
    assert copies == 1  # the COPY ran, then its transaction was rolled back
    assert staged_keys(emulator, stand) == []  # its manifest removed all the same
    assert (settled.inserted, settled.rows_failed, settled.dead) == (1_999, 1, None)
    assert [letter.message.message_id for letter in stand.dead.letters] == ["n-1#0:78"]
    found = table_rows(pg_dsn, table_name)
    assert len(found) == 1_999
    assert all(value[-1] != "n-1#0:copy" for value in found.values())  # streamed
    assert gone.dead is not None and gone.dead.reason.value == "object_missing"


def test_an_object_whose_key_extends_the_announced_one_is_not_loaded_with_it(
    emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    """A bare ``COPY FROM 's3://bucket/key'`` would load every key beginning with ``key``;
    the manifest names the announced object alone."""
    bucket = s3.make_bucket(emulator.endpoint)
    key = "t=inapps/dt=2024-05-01/h=3/part-00000.gz"
    rows = hostile_rows(500, seed=43)
    ref = put_object(emulator, rows, key, bucket)
    put_object(emulator, hostile_rows(300, seed=44), f"{key}.tmp", bucket)
    put_object(emulator, hostile_rows(200, seed=45), f"{key}1", bucket)
    stand = Stand(emulator, pg_dsn, table_name)
    settled = asyncio.run(stand.run(lambda stand: stand.announce(ref)))
    assert (settled.inserted, settled.rows_failed, settled.dead) == (500, 0, None)
    assert stand.data_api.copies == 1
    assert stand.data_api.copied_urls == [ref.url]
    found = table_rows(pg_dsn, table_name)
    assert sorted(found) == sorted(row.dedupe_key for row in python_rows(rows, ref))
    assert {value[-1] for value in found.values()} == {"n-1#0:copy"}
    assert staged_keys(emulator, stand) == []


def test_a_copy_of_a_missing_object_fails_as_redshift_says_and_removes_its_manifest(
    emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    bucket = s3.make_bucket(emulator.endpoint)
    source = CsvObject(
        f"s3://{bucket}/t=inapps/dt=2024-05-01/h=4/gone.csv.gz",
        HEADER,
        CopyForm.CSV_GZIP,
        "n-1#0:copy",
        None,
    )
    stand = Stand(emulator, pg_dsn, table_name)

    async def work(stand: Stand) -> str:
        try:
            await stand.sink.copy_csv_object(source)
        except SluiceError as exc:
            return str(exc)
        raise AssertionError("the COPY of a missing mandatory object succeeded")

    error = asyncio.run(stand.run(work))
    assert "Mandatory url is not present in manifest file." in error
    assert stand.stager.requests == 3  # ping, PutObject, DeleteObjects
    assert staged_keys(emulator, stand) == []
    assert table_rows(pg_dsn, table_name) == {}
