"""RedshiftSink's load logic with fake edges: what one load issues, and how it fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from sluice.errors import PermanentError, TransientError
from sluice.faultpoints import FaultPoint
from sluice.mapping import load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.base import RowsRejectedError
from sluice.sinks.redshift.errors import SerializationConflict
from sluice.sinks.redshift.object_copy import CopyForm, CsvObject
from sluice.sinks.redshift.sink import CONFLICT_ATTEMPTS, LoadPath, RedshiftSink
from sluice.sinks.redshift.sql import CURRENT_DATABASE_SQL, ISOLATION_SQL, MergeLock
from sluice.sinks.redshift.staging import S3Stager, StagingLocation
from sluice.tools.synth import synthetic_stream

MAPPING = load_mapping(None, "appsflyer_events")
ROLE = "arn:aws:iam::123456789012:role/copy"


class FakeRunner:
    """``isolation`` is what the database says of itself; ``failures`` fail the first runs."""

    def __init__(
        self,
        inserted: int = 0,
        fail: Exception | None = None,
        isolation: str = "Serializable",
        failures: Sequence[Exception] = (),
    ) -> None:
        self.transactions: list[tuple[str, ...]] = []
        self.inserted = inserted
        self.fail = fail
        self.isolation = isolation
        self.failures = list(failures)
        self.requests = 0

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]:
        self.transactions.append(tuple(statements))
        if self.failures:
            raise self.failures.pop(0)
        if self.fail is not None:
            raise self.fail
        return tuple(
            self.inserted if s.startswith('INSERT INTO "appsflyer') else -1 for s in statements
        )

    async def execute(self, sql: str) -> None:
        return None

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]:
        if sql == CURRENT_DATABASE_SQL:
            return [("analytics",)]
        if sql == ISOLATION_SQL["redshift"]:
            return [("other_db", "Serializable"), ("analytics", self.isolation)]
        return []

    async def close(self) -> None:
        return None


class FakeS3:
    def __init__(self, fail_delete: bool = False) -> None:
        self.calls: list[str] = []
        self.objects: dict[str, bytes] = {}
        self.written: list[bytes] = []  # every body put, deleted or not
        self.fail_delete = fail_delete

    async def put_object(self, Bucket: str, Key: str, Body: Any, **_: Any) -> dict[str, Any]:
        self.calls.append("PutObject")
        self.objects[Key] = Body.read()
        self.written.append(self.objects[Key])
        return {}

    async def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("DeleteObjects")
        if self.fail_delete:
            return {"Errors": [{"Key": "k", "Code": "InternalError", "Message": "try later"}]}
        for item in Delete["Objects"]:
            self.objects.pop(item["Key"], None)
        return {}


class Faults:
    def __init__(self) -> None:
        self.hits: list[FaultPoint] = []

    def hit(self, point: FaultPoint) -> None:
        self.hits.append(point)


def rows(n: int) -> list[MappedRow]:
    out = []
    for i, m in enumerate(synthetic_stream(n, malformed_ratio=0, duplicate_ratio=0)):
        message = ReceivedMessage(f"m{i}", "r", m.body, 1, 0)
        out.append(MAPPING.map_event(orjson.loads(m.body), m.body, message))
    return out


def copy_sink(runner: FakeRunner, s3: FakeS3, faults: Faults | None = None) -> RedshiftSink:
    async def client() -> FakeS3:
        return s3

    stager = S3Stager(client, StagingLocation("bucket", "stage"), "w1")
    return RedshiftSink(runner, MAPPING, stager=stager, iam_role=ROLE, faults=faults)


def test_a_copy_load_is_one_transaction_two_puts_and_one_delete() -> None:
    runner, s3, faults = FakeRunner(inserted=15), FakeS3(), Faults()
    sink = copy_sink(runner, s3, faults)
    result = asyncio.run(sink.load(rows(20)))
    assert (result.inserted, result.already_present) == (15, 5)
    assert sink.path is LoadPath.COPY
    [transaction] = runner.transactions
    # a SERIALIZABLE database: no LOCK, readers never wait on the load
    assert [s.split(" ")[0] for s in transaction] == ["CREATE", "COPY", "INSERT", "DROP"]
    assert s3.calls == ["PutObject", "PutObject", "DeleteObjects"]
    assert s3.objects == {}
    assert sink.statements == 4
    assert faults.hits == [FaultPoint.MID_STAGING, FaultPoint.BEFORE_COMMIT]


def test_a_failed_copy_load_still_removes_what_it_staged() -> None:
    runner, s3 = FakeRunner(fail=TransientError("1023")), FakeS3()
    with pytest.raises(TransientError):
        asyncio.run(copy_sink(runner, s3).load(rows(3)))
    assert s3.calls[-1] == "DeleteObjects" and s3.objects == {}


def test_failing_to_remove_staged_objects_does_not_fail_a_committed_load() -> None:
    runner, s3 = FakeRunner(inserted=3), FakeS3(fail_delete=True)
    result = asyncio.run(copy_sink(runner, s3).load(rows(3)))
    assert result.inserted == 3  # the lifecycle rule collects the leftovers


def test_the_insert_path_splits_a_batch_into_complete_transactions() -> None:
    runner = FakeRunner(inserted=1)
    sink = RedshiftSink(runner, MAPPING, max_statement_bytes=20_000, max_transaction_bytes=60_000)
    batch = rows(200)
    result = asyncio.run(sink.load(batch))
    assert sink.path is LoadPath.INSERT
    assert len(runner.transactions) > 1
    for transaction in runner.transactions:
        assert transaction[0].startswith("CREATE TEMP TABLE")
        assert transaction[-1].startswith("DROP")
        assert not any(s.startswith("LOCK") for s in transaction)
        assert len(transaction) <= 40
    staged = sum(s.count("), (") + 1 for t in runner.transactions for s in t[1:-2])
    assert staged == 200
    assert result.inserted == len(runner.transactions)  # one row per merge, says the fake
    assert result.inserted + result.already_present == 200


def test_a_row_too_big_for_the_insert_path_is_rejected_so_the_loader_isolates_it() -> None:
    sink = RedshiftSink(FakeRunner(), MAPPING, max_statement_bytes=500)
    with pytest.raises(RowsRejectedError, match="statement limit"):
        asyncio.run(sink.load(rows(1)))


def test_the_copy_path_needs_its_role() -> None:
    with pytest.raises(ValueError, match="IAM role"):
        RedshiftSink(FakeRunner(), MAPPING, stager=object(), iam_role=None)  # type: ignore[arg-type]


OBJECT = CsvObject(
    's3://data-locker/t=inapps/dt=2024-05-01/h=1/it\'s "part".gz',
    ("AppsFlyer ID", "Event Name"),
    CopyForm.CSV_GZIP,
    "m-1#0:copy",
    None,
)


def test_an_object_copy_reads_a_one_entry_manifest_staged_for_it_then_removed() -> None:
    runner, s3 = FakeRunner(inserted=4), FakeS3()
    sink = copy_sink(runner, s3)
    assert sink.copies_objects
    asyncio.run(sink.copy_csv_object(OBJECT))
    assert orjson.loads(s3.written[0]) == {"entries": [{"url": OBJECT.url, "mandatory": True}]}
    [transaction] = runner.transactions
    [copy] = [s for s in transaction if s.startswith("COPY")]
    assert "FROM 's3://bucket/stage/w1/" in copy and "/manifest.json' IAM_ROLE" in copy
    assert " MANIFEST CSV GZIP " in copy and "data-locker" not in copy
    assert s3.calls == ["PutObject", "DeleteObjects"] and s3.objects == {}


def test_a_failed_object_copy_still_removes_its_manifest() -> None:
    runner, s3 = FakeRunner(fail=PermanentError("ERROR: division by zero")), FakeS3()
    with pytest.raises(PermanentError):
        asyncio.run(copy_sink(runner, s3).copy_csv_object(OBJECT))
    assert s3.calls == ["PutObject", "DeleteObjects"] and s3.objects == {}


def test_without_s3_staging_objects_are_not_copied() -> None:
    """No staging location, no manifest: the object streams instead (objects/copy.py)."""
    sink = RedshiftSink(FakeRunner(), MAPPING, iam_role=ROLE)
    assert not sink.copies_objects
    with pytest.raises(PermanentError, match="S3 staging"):
        asyncio.run(sink.copy_csv_object(OBJECT))


def sink_with(runner: FakeRunner, lock: MergeLock | None = None) -> RedshiftSink:
    async def no_pause(_: float) -> None:
        return None

    return RedshiftSink(runner, MAPPING, merge_lock=lock, sleep=no_pause)


@pytest.mark.parametrize("level", ["Snapshot Isolation", "read committed", ""])
def test_auto_locks_the_target_first_unless_the_database_is_serializable(level: str) -> None:
    runner = FakeRunner(inserted=2, isolation=level)
    sink = sink_with(runner)
    asyncio.run(sink.load(rows(2)))
    [transaction] = runner.transactions
    # First, before any statement takes the snapshot: a later LOCK would wait for the
    # other merge and still read the table as it was before it.
    assert transaction[0] == 'LOCK "appsflyer_events"'
    assert transaction[1].startswith("CREATE TEMP TABLE")
    assert sum(s.startswith("LOCK") for s in transaction) == 1


def test_explicit_transaction_locks_even_a_serializable_database() -> None:
    runner = FakeRunner(inserted=2)
    asyncio.run(sink_with(runner, MergeLock.TRANSACTION).load(rows(2)))
    assert runner.transactions[0][0] == 'LOCK "appsflyer_events"'


def test_explicit_none_is_refused_on_a_snapshot_isolation_database() -> None:
    sink = sink_with(FakeRunner(isolation="Snapshot Isolation"), MergeLock.NONE)
    with pytest.raises(PermanentError, match=r"MERGE_LOCK=none is unsafe .*SERIALIZABLE"):
        asyncio.run(sink.open())


def test_explicit_none_is_kept_where_the_isolation_level_cannot_be_read() -> None:
    runner = FakeRunner(inserted=1, isolation="")
    asyncio.run(sink_with(runner, MergeLock.NONE).load(rows(1)))
    assert not any(s.startswith("LOCK") for s in runner.transactions[0])


def test_a_serialization_conflict_runs_the_whole_transaction_again() -> None:
    conflict = SerializationConflict("ERROR: 1023 DETAIL: Serializable isolation violation")
    runner = FakeRunner(inserted=3, failures=[conflict, conflict])
    sink = sink_with(runner)
    result = asyncio.run(sink.load(rows(3)))
    assert (result.inserted, result.already_present) == (3, 0)
    assert len(runner.transactions) == 3
    assert runner.transactions[0] == runner.transactions[1] == runner.transactions[2]
    assert sink.conflict_retries == 2


def test_conflicts_that_persist_reach_the_pipeline_as_a_plain_transient_error() -> None:
    conflict = SerializationConflict("ERROR: 1023 DETAIL: Serializable isolation violation")
    runner = FakeRunner(failures=[conflict] * CONFLICT_ATTEMPTS)
    with pytest.raises(TransientError, match="1023") as caught:
        asyncio.run(sink_with(runner).load(rows(1)))
    assert type(caught.value) is TransientError  # retried later with backoff, circuit counted
    assert len(runner.transactions) == CONFLICT_ATTEMPTS


def test_other_transient_errors_are_not_retried_inside_the_sink() -> None:
    runner = FakeRunner(failures=[TransientError("connection reset")])
    with pytest.raises(TransientError, match="connection reset"):
        asyncio.run(sink_with(runner).load(rows(1)))
    assert len(runner.transactions) == 1
