"""The Redshift sink's Data API statement flow and S3 staging against moto server.

moto runs as a real process (tests/support/moto_redshift.py adds the statement life cycle
and BatchExecuteStatement its redshift-data lacks). No SQL runs there: these tests pin what
is sent, how it is polled, and how each failure is classified.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import boto3
import orjson
import pytest

from sluice.config import load_settings
from sluice.errors import (
    CommitUnknownError,
    PermanentError,
    SchemaError,
    TransientError,
)
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.mapping import TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.base import RowsRejectedError
from sluice.sinks.redshift.build import AwsClients, build_redshift_sink
from sluice.sinks.redshift.data_api import (
    DataApiRunner,
    DataApiTarget,
    PollPolicy,
    translate_client_error,
)
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.redshift.sql import MergeLock
from sluice.sinks.redshift.staging import S3Stager, StagingLocation
from tests.support.moto_control import column_records, control

T = TypeVar("T")
ROLE = "arn:aws:iam::123456789012:role/sluice-copy"
TARGET = DataApiTarget("analytics", cluster_identifier="events", db_user="sluice")
FAST = PollPolicy(first=0.01, cap=0.05, timeout=10)


class Recorder:
    """Wraps an aiobotocore client; records each call's operation and arguments."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return await method(**kwargs)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def run(
    moto: str, work: Callable[[Recorder, Recorder], Awaitable[T]], s3_endpoint: str | None = None
) -> T:  # work gets (redshift-data, s3)
    async def go() -> T:
        clients = AwsClients("us-east-1", EMULATOR_CREDENTIALS, 8, 30)
        try:
            data = Recorder(await clients.get("redshift-data", moto))
            s3 = Recorder(await clients.get("s3", s3_endpoint or moto))
            return await work(data, s3)
        finally:
            await clients.close()

    return asyncio.run(go())


@pytest.fixture
def rules(moto: str) -> Callable[..., None]:
    """Install rules for one test; cleared afterwards. Returns the setter."""
    control(moto, history=True)

    def install(*items: dict[str, Any], describes_before_done: int = 1) -> None:
        control(moto, rules=list(items), describes_before_done=describes_before_done)

    yield install
    control(moto, rules=[], describes_before_done=1)


def history_since(moto: str, before: int) -> list[str]:
    return [sql for sql, _ in control(moto, history=True)[before:]]


def make_rows(mapping: TableMapping, n: int) -> list[MappedRow]:
    rows = []
    for i in range(n):
        event = {
            "appsflyer_id": f"af-{i}",
            "event_name": "install",
            "event_time": "2024-05-01 12:34:56.789",
            "event_value": {"af_revenue": "1.5", "quote": "it's"},
            "event_revenue": "12.345678",
        }
        body = orjson.dumps(event).decode()
        message = ReceivedMessage(f"m-{i:05}", "rh", body, 1, 1_714_566_896_789)
        rows.append(mapping.map_event(event, body, message))
    return rows


def test_a_transaction_is_one_batch_polled_until_finished(moto: str, rules: Any) -> None:
    rules({"match": "^INSERT INTO", "rows": 7}, describes_before_done=2)
    before = len(control(moto, history=True))

    async def work(data: Recorder, _: Recorder) -> tuple[int, ...]:
        runner = DataApiRunner(lambda: _ready(data), TARGET, FAST)
        return await runner.run(
            ["CREATE TEMP TABLE s (a INT)", "INSERT INTO t SELECT 1", "SELECT 2"]
        )

    counts = run(moto, lambda data, s3: _with(data, work(data, s3)))
    assert counts == (0, 7, 0)
    assert history_since(moto, before) == [
        "CREATE TEMP TABLE s (a INT)",
        "INSERT INTO t SELECT 1",
        "SELECT 2",
    ]


async def _ready(client: Recorder) -> Recorder:
    return client


async def _with(data: Recorder, work: Awaitable[T]) -> T:
    result = await work
    names = data.names()
    assert names[0] == "batch_execute_statement"
    assert names.count("describe_statement") == 3  # STARTED twice, then FINISHED
    _, first = data.calls[0]
    assert first["ClusterIdentifier"] == "events" and first["DbUser"] == "sluice"
    assert first["Database"] == "analytics" and "SecretArn" not in first
    return result


def test_target_parameters_for_secret_and_serverless() -> None:
    secret = DataApiTarget("dev", cluster_identifier="c", db_user="u", secret_arn="arn:x")
    assert secret.request() == {"Database": "dev", "ClusterIdentifier": "c", "SecretArn": "arn:x"}
    serverless = DataApiTarget("dev", workgroup="analytics-wg")
    assert serverless.request() == {"Database": "dev", "WorkgroupName": "analytics-wg"}


@pytest.mark.parametrize(
    ("error", "family"),
    [
        ("ERROR: 1023 DETAIL: Serializable isolation violation on table - 123", TransientError),
        ('ERROR: syntax error at or near "MERGEE"', PermanentError),
        ("ERROR: permission denied for relation appsflyer_events", PermanentError),
        (
            "ERROR: Load into table 'sluice_staging' failed. Check 'stl_load_errors'",
            RowsRejectedError,
        ),
        ("ERROR: value too long for type character varying(16)", RowsRejectedError),
        ('ERROR: relation "public.appsflyer_events" does not exist', SchemaError),
        ("ERROR: S3ServiceException:Access Denied,Status 403", PermanentError),
    ],
)
def test_a_failed_statement_is_classified_by_its_error(
    moto: str, rules: Any, error: str, family: type[Exception]
) -> None:
    rules({"match": "^LOCK", "status": "FAILED", "error": error})

    async def work(data: Recorder, _: Recorder) -> None:
        runner = DataApiRunner(lambda: _ready(data), TARGET, FAST)
        await runner.run(["CREATE TEMP TABLE s (a INT)", 'LOCK "t"', "INSERT INTO t SELECT 1"])

    with pytest.raises(family) as caught:
        run(moto, work)
    assert type(caught.value) is family or issubclass(type(caught.value), family)
    if family is PermanentError:
        assert not isinstance(caught.value, TransientError | RowsRejectedError | SchemaError)
    assert error in str(caught.value)


def test_a_statement_past_its_deadline_is_cancelled_and_of_unknown_outcome(
    moto: str, rules: Any
) -> None:
    rules({"match": "^INSERT", "status": "STARTED"})

    async def work(data: Recorder, _: Recorder) -> list[str]:
        runner = DataApiRunner(lambda: _ready(data), TARGET, PollPolicy(0.01, 2, 0.05, 0.3))
        with pytest.raises(CommitUnknownError, match="cancelled"):
            await runner.run(["INSERT INTO t SELECT 1", "SELECT 2"])
        with pytest.raises(TransientError, match="cancelled") as plain:
            await runner.execute("INSERT INTO t SELECT 3")
        assert not isinstance(plain.value, CommitUnknownError)  # nothing was committing
        return data.names()

    names = run(moto, work)
    assert names.count("cancel_statement") == 2
    # capped backoff: far fewer polls than 0.3 s / 0.01 s, more than one
    assert 3 <= names.count("describe_statement") <= 30


def test_service_refusals_are_classified_by_code(moto: str) -> None:
    async def work(data: Recorder, _: Recorder) -> Exception:
        try:
            await data.describe_statement(Id="not-an-id")
        except Exception as exc:  # botocore ClientError
            return translate_client_error(exc, "DescribeStatement")  # type: ignore[arg-type]
        raise AssertionError("moto accepted a malformed id")

    error = run(moto, work)
    assert isinstance(error, PermanentError) and "ValidationException" in str(error)


def test_query_binds_parameters_never_literals(moto: str, rules: Any) -> None:
    rules({"match": "information_schema", "records": [[{"stringValue": "a"}, {"isNull": True}]]})
    before = len(control(moto, history=True))

    async def work(data: Recorder, _: Recorder) -> list[tuple[object, ...]]:
        runner = DataApiRunner(lambda: _ready(data), TARGET, FAST)
        return await runner.query(
            "SELECT 1 FROM information_schema.columns WHERE table_name = :p1", ["x'; --"]
        )

    assert run(moto, work) == [("a", None)]
    [(sql, params)] = control(moto, history=True)[before:]
    assert "x'; --" not in sql
    assert orjson.loads(params) == [{"name": "p1", "value": "x'; --"}]


def _bucket(moto: str) -> str:
    name = f"stage-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["moto", "fauxqs"])
def s3_endpoint(request: pytest.FixtureRequest, moto: str) -> str:
    """Both S3-compatible endpoints at hand: moto server, and the SQS emulator's own S3."""
    if request.param == "moto":
        return moto
    emulator: Emulator = request.getfixturevalue("emulator")
    return emulator.endpoint


def test_s3_staging_writes_gzip_json_lines_and_a_manifest_then_removes_them(
    moto: str, s3_endpoint: str
) -> None:
    bucket = _bucket(s3_endpoint)
    mapping = load_mapping(None, "events")
    rows = make_rows(mapping, 25)

    async def work(_: Recorder, s3: Recorder) -> None:
        stager = S3Stager(lambda: _ready(s3), StagingLocation.parse(f"s3://{bucket}/sluice"), "w/1")
        await stager.ping()
        staged = await stager.stage(mapping, rows)
        data_key, manifest_key = staged.keys
        assert data_key.startswith("sluice/w_1/") and data_key.endswith("part-00000.json.gz")
        manifest = orjson.loads(
            await (await s3.get_object(Bucket=bucket, Key=manifest_key))["Body"].read()
        )
        assert manifest["entries"][0]["url"] == f"s3://{bucket}/{data_key}"
        assert staged.manifest_url == f"s3://{bucket}/{manifest_key}"
        body = await (await s3.get_object(Bucket=bucket, Key=data_key))["Body"].read()
        lines = [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
        assert len(lines) == 25
        first = lines[0]
        assert first["raw_event"]["event_value"] == {"af_revenue": "1.5", "quote": "it's"}
        assert first["event_value"] == {"af_revenue": "1.5", "quote": "it's"}  # nested: SUPER
        assert first["event_time"] == "2024-05-01 12:34:56.789000"
        assert first["event_revenue"] == 12.345678
        assert b'"event_revenue":12.345678' in gzip.decompress(body)  # exact digits
        await stager.remove(staged)
        listed = await s3.list_objects_v2(Bucket=bucket, Prefix="sluice/")
        assert listed.get("KeyCount", 0) == 0
        assert stager.requests == 4  # ListObjectsV2, 2 x PutObject, DeleteObjects

    run(moto, work, s3_endpoint)


def test_s3_staging_on_a_missing_bucket_is_permanent(moto: str, s3_endpoint: str) -> None:
    async def work(_: Recorder, s3: Recorder) -> None:
        stager = S3Stager(lambda: _ready(s3), StagingLocation.parse("s3://no-such-bucket-x/p"), "w")
        with pytest.raises(PermanentError, match="NoSuchBucket"):
            await stager.ping()

    run(moto, work, s3_endpoint)


def redshift_env(moto: str, **extra: str) -> dict[str, str]:
    return {
        "SLUICE_SINK": "redshift",
        "REDSHIFT_TABLE_NAME": "appsflyer_events",
        "REDSHIFT_CLUSTER_IDENTIFIER": "events",
        "REDSHIFT_DATABASE": "analytics",
        "REDSHIFT_DB_USER": "sluice",
        "AWS_ENDPOINT_URL_S3": moto,
        "AWS_ENDPOINT_URL_REDSHIFT_DATA": moto,
        "WORKER_ID": "worker-1",
        **extra,
    }


def isolation_rules(level: str) -> list[dict[str, Any]]:
    """What Redshift answers about itself: this database and its isolation level."""
    return [
        {"match": r"^SELECT current_database\(\)$", "records": [[{"stringValue": "analytics"}]]},
        {
            "match": "stv_db_isolation_level",
            "records": [
                [{"stringValue": "dev"}, {"stringValue": "Snapshot Isolation"}],
                [{"stringValue": "analytics"}, {"stringValue": level}],
            ],
        },
    ]


MERGE = '^INSERT INTO "appsflyer_events"'
CONFLICT = (
    "ERROR: 1023 DETAIL: Serializable isolation violation on table - 100080, transactions "
    "forming the cycle are: 2001, 2002 (pid:4242)"
)


def copy_load(moto: str, bucket: str, rows: int, **env: str) -> tuple[int, int, int]:
    """One load through the settings; (inserted, already present, conflict retries)."""
    settings = load_settings(
        redshift_env(
            moto, SLUICE_S3_STAGING_URI=f"s3://{bucket}/stage", SLUICE_REDSHIFT_IAM_ROLE=ROLE, **env
        )
    )
    mapping = load_mapping(None, "appsflyer_events")

    async def go() -> tuple[int, int, int]:
        sink = build_redshift_sink(settings, mapping, credentials=EMULATOR_CREDENTIALS)
        try:
            await sink.open()
            result = await sink.load(make_rows(mapping, rows))
            return result.inserted, result.already_present, sink.conflict_retries
        finally:
            await sink.close()

    return asyncio.run(go())


def test_the_copy_path_end_to_end_through_the_settings(moto: str, rules: Any) -> None:
    bucket = _bucket(moto)
    rules(*isolation_rules("Serializable"), {"match": MERGE, "rows": 40})
    before = len(control(moto, history=True))
    assert copy_load(moto, bucket, 50) == (40, 10, 0)
    sent = history_since(moto, before)
    # open(): ping, then the isolation level, which decides the lock
    assert sent[:3] == [
        "SELECT 1",
        "SELECT current_database()",
        "SELECT db_name, isolation_level FROM stv_db_isolation_level",
    ]
    statements = sent[3:]
    # SERIALIZABLE: no LOCK, so nobody's SELECT waits on the load
    assert [s.split(" ")[0] for s in statements] == ["CREATE", "COPY", "INSERT", "DROP"]
    assert f"FROM 's3://{bucket}/stage/worker-1/" in statements[1]
    assert f"IAM_ROLE '{ROLE}'" in statements[1]
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # removed after commit


def test_a_1023_conflict_runs_the_whole_transaction_again_and_loads_once(
    moto: str, rules: Any
) -> None:
    bucket = _bucket(moto)
    refuse_once = {"match": MERGE, "status": "FAILED", "error": CONFLICT, "times": 1}
    rules(*isolation_rules("Serializable"), refuse_once, {"match": MERGE, "rows": 30})
    before = len(control(moto, history=True))
    assert copy_load(moto, bucket, 30) == (30, 0, 1)
    sent = history_since(moto, before)[3:]
    kinds = [s.split(" ")[0] for s in sent]
    # the first BatchExecuteStatement failed at its merge and rolled back whole; the same
    # five statements went again, and only the second transaction's merge counted rows
    assert kinds == ["CREATE", "COPY", "INSERT", "DROP"] * 2
    assert sent[:4] == sent[4:]
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("level", "setting", "first"),
    [
        ("Snapshot Isolation", "auto", "LOCK"),  # two NOT EXISTS could both commit: lock
        ("Serializable", "transaction", "LOCK"),
        ("Serializable", "none", "CREATE"),
    ],
)
def test_the_merge_lock_follows_the_setting_and_the_isolation_level(
    moto: str, rules: Any, level: str, setting: str, first: str
) -> None:
    bucket = _bucket(moto)
    rules(*isolation_rules(level), {"match": MERGE, "rows": 5})
    before = len(control(moto, history=True))
    copy_load(moto, bucket, 5, SLUICE_REDSHIFT_MERGE_LOCK=setting)
    sent = [s for s in history_since(moto, before) if not s.startswith("SELECT")]
    assert sent[0].split(" ")[0] == first
    assert sum(s.startswith("LOCK") for s in sent) == (first == "LOCK")


def test_merge_lock_none_is_refused_on_a_snapshot_isolation_database(moto: str, rules: Any) -> None:
    rules(*isolation_rules("Snapshot Isolation"))
    with pytest.raises(PermanentError, match="MERGE_LOCK=none is unsafe"):
        copy_load(moto, _bucket(moto), 5, SLUICE_REDSHIFT_MERGE_LOCK="none")


def test_the_copy_path_removes_staged_objects_when_the_load_fails(moto: str, rules: Any) -> None:
    bucket = _bucket(moto)
    settings = load_settings(
        redshift_env(
            moto, SLUICE_S3_STAGING_URI=f"s3://{bucket}/stage", SLUICE_REDSHIFT_IAM_ROLE=ROLE
        )
    )
    mapping = load_mapping(None, "appsflyer_events")
    rules({"match": "^COPY", "status": "FAILED", "error": "Load into table 'x' failed."})

    async def go() -> None:
        sink = build_redshift_sink(settings, mapping, credentials=EMULATOR_CREDENTIALS)
        try:
            with pytest.raises(RowsRejectedError):
                await sink.load(make_rows(mapping, 5))
        finally:
            await sink.close()

    asyncio.run(go())
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_the_insert_path_groups_statements_at_most_40_and_1_mb_to_a_batch(
    moto: str, rules: Any
) -> None:
    settings = load_settings(redshift_env(moto))
    mapping = load_mapping(None, "appsflyer_events")
    rows = make_rows(mapping, 2000)  # ~2.5 MB of SQL: several transactions
    before = len(control(moto, history=True))

    async def work(data: Recorder, _: Recorder) -> int:
        runner = DataApiRunner(lambda: _ready(data), TARGET, FAST)
        # with the LOCK, the fullest transaction the insert path makes
        sink = RedshiftSink(runner, mapping, merge_lock=MergeLock.TRANSACTION)
        await sink.load(rows)
        batches = [kw["Sqls"] for name, kw in data.calls if name == "batch_execute_statement"]
        assert len(batches) >= 2
        for sqls in batches:
            assert len(sqls) <= 40
            assert all(len(s.encode()) <= 100_000 for s in sqls)
            assert sum(len(s.encode()) for s in sqls) <= 1_000_000
            assert sqls[0] == 'LOCK "appsflyer_events"' and sqls[-1].startswith("DROP")
            assert sqls[1].startswith("CREATE TEMP TABLE")
        inserts = [s for sqls in batches for s in sqls if s.startswith('INSERT INTO "sluice_')]
        return sum(s.count("), (") + 1 for s in inserts)

    assert settings.redshift.copy is False
    assert run(moto, work) == 2000
    assert history_since(moto, before)[0] == 'LOCK "appsflyer_events"'  # no isolation query


def test_check_schema_reads_information_schema_through_the_data_api(moto: str, rules: Any) -> None:
    mapping = load_mapping(None, "appsflyer_events")
    records = column_records(mapping)
    rules({"match": "information_schema", "records": records})

    async def work(data: Recorder, _: Recorder) -> None:
        sink = RedshiftSink(DataApiRunner(lambda: _ready(data), TARGET, FAST), mapping)
        await sink.check_schema()
        rules({"match": "information_schema", "records": records[1:]})
        with pytest.raises(SchemaError, match="appsflyer_id is missing"):
            await sink.check_schema()

    run(moto, work)
