"""The Lambda handler in-process, with generated SQS events, against real PostgreSQL (and the
Redshift sink through the Data API stand-in that runs its SQL on PostgreSQL) and the emulator's
DLQ: loads raw and SNS-wrapped records, answers with only the transient failures, one row for a
record delivered twice, poison to the DLQ with its reason, a stale connection re-made, a
deadline close to expiry stopping cleanly, one EMF line per invocation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import psycopg
import pytest

from sluice.aws_lambda import handler as module_handler
from sluice.aws_lambda.container import LambdaContainer
from sluice.aws_lambda.handler import CONTAINER
from sluice.config import Settings, load_settings
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.mapping import TableMapping
from sluice.model import LoadResult, MappedRow
from sluice.runtime.worker import build_sink
from sluice.sinks.base import Sink
from sluice.sinks.redshift.data_api import DataApiRunner, DataApiTarget
from sluice.sinks.redshift.sink import RedshiftSink
from sluice.sinks.sql import POSTGRES
from tests.support import sqs
from tests.support.data_api_postgres import PostgresDataApi
from tests.support.lambda_events import FakeContext, appsflyer, event, failures, record, sns
from tests.support.tcp_proxy import TcpFaultProxy

WORKER = "lambda-test"


def lambda_env(
    queues: sqs.Queues, dsn: str, table: str, *, sink: str = "postgres", **extra: str
) -> dict[str, str]:
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": queues.endpoint,
        "SLUICE_DLQ_URL": queues.dlq_url,
        "REDSHIFT_TABLE_NAME": table,
        "WORKER_ID": WORKER,
        "SLUICE_LOG_FORMAT": "json",
    }
    if sink == "postgres":
        env |= {"SLUICE_SINK": "postgres", "SLUICE_DATABASE_URL": dsn}
    else:
        env |= {
            "SLUICE_SINK": "redshift",
            "REDSHIFT_CLUSTER_IDENTIFIER": "c",
            "REDSHIFT_DB_USER": "u",
            "REDSHIFT_DATABASE": "test",
        }
    return env | extra


class DataApiSink:
    """The Redshift sink over the Data API stand-in (statements run on PostgreSQL)."""

    def __init__(self, dsn: str) -> None:
        self.api = PostgresDataApi(dsn)

    def __call__(self, settings: Settings, mapping: TableMapping) -> Sink:
        api = self.api

        async def client() -> PostgresDataApi:
            return api

        target = DataApiTarget("test", cluster_identifier="c", db_user="u")
        runner = DataApiRunner(client, target)  # type: ignore[arg-type]
        sink = RedshiftSink(runner, mapping, dialect=POSTGRES, max_statement_bytes=20_000)
        close = sink.close

        async def closing() -> None:
            await close()
            await api.close()

        sink.close = closing  # type: ignore[method-assign]
        return sink


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __call__(self, line: str) -> None:
        assert "\n" not in line
        self.lines.append(orjson.loads(line))

    @property
    def last(self) -> dict[str, Any]:
        return self.lines[-1]


def start(
    env: dict[str, str], *, sink_factory: Any = None, create: bool = True
) -> tuple[LambdaContainer, Lines]:
    lines = Lines()
    container = LambdaContainer(
        load_settings(env),
        sink_factory=sink_factory,
        credentials=EMULATOR_CREDENTIALS,
        emit=lines,
    )
    if create:
        container.loop.run_until_complete(container.sink.create_table())
    return container, lines


@pytest.fixture
def queues(emulator: Emulator) -> sqs.Queues:
    return sqs.make_queues(emulator.endpoint)


@pytest.fixture(params=["postgres", "data-api"])
def container(
    request: pytest.FixtureRequest, queues: sqs.Queues, pg_dsn: str, table_name: str
) -> Iterator[tuple[LambdaContainer, Lines]]:
    sink = request.param
    factory = DataApiSink(pg_dsn) if sink == "data-api" else None
    made, lines = start(lambda_env(queues, pg_dsn, table_name, sink=sink), sink_factory=factory)
    try:
        yield made, lines
    finally:
        made.close()


def rows(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT message_id, raw_event FROM "{table}" ORDER BY 1').fetchall()


def test_raw_and_sns_wrapped_records_with_attributes_load_and_nothing_comes_back(
    container: tuple[LambdaContainer, Lines], pg_dsn: str, table_name: str
) -> None:
    made, lines = container
    records = [record(appsflyer(i)) for i in range(5)]
    records += [record(sns(appsflyer(i))) for i in range(5, 10)]
    records.append(
        record(appsflyer(10), attributes={"source": "push-api", "signature": b"\x00\xffsig"})
    )
    answer = made.handle(event(records), FakeContext())
    assert answer == {"batchItemFailures": []}
    loaded = rows(pg_dsn, table_name)
    assert sorted(r[0] for r in loaded) == sorted(str(r["messageId"]) for r in records)
    # the SNS envelope is unwrapped: the raw event stored is the AppsFlyer event itself
    assert all(r[1]["event_name"] == "af_purchase" for r in loaded)
    (line,) = lines.lines
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Sluice"
    assert (line["Received"], line["Inserted"], line["BatchItemFailures"]) == (11, 11, 0)
    assert line["FunctionName"] == "sluice-test"
    assert line["workerId"] == WORKER and line["messagesProcessed"] == 11


def test_a_record_delivered_twice_is_one_row(
    container: tuple[LambdaContainer, Lines], pg_dsn: str, table_name: str
) -> None:
    made, lines = container
    body = appsflyer(1)
    first = record(body, message_id="m-twice")
    again = record(body, message_id="m-twice", receive_count=2)  # a new receipt handle
    twin = record(body, message_id="m-twin")  # a producer retry in the same event
    assert failures(made.handle(event([first, twin]), FakeContext())) == []
    assert failures(made.handle(event([again]), FakeContext())) == []
    assert len(rows(pg_dsn, table_name)) == 1
    assert (lines.lines[0]["Inserted"], lines.lines[0]["DuplicatesInBatch"]) == (1, 1)
    assert (lines.last["Inserted"], lines.last["DuplicatesInTarget"]) == (0, 1)


def test_poison_goes_to_the_dlq_with_its_reason_and_not_in_the_answer(
    container: tuple[LambdaContainer, Lines], queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    made, lines = container
    good = [record(appsflyer(i)) for i in range(3)]
    poison = [
        record("not json {", message_id="bad-json"),
        record(appsflyer(9, event_time="yesterday"), message_id="bad-type"),
        record(sns("[1, 2]"), message_id="bad-sns"),
    ]
    answer = made.handle(event([good[0], *poison, *good[1:]]), FakeContext())
    assert failures(answer) == []
    assert len(rows(pg_dsn, table_name)) == 3
    assert sqs.dlq_reasons(queues.endpoint, queues.dlq_url) == {
        "invalid_json": 1,
        "wrong_type": 1,
        "not_an_object": 1,
    }
    assert lines.last["DeadLettered"] == 3
    assert lines.last["DeadLettered.invalid_json"] == 1
    assert lines.last["deadLettered"] == {"invalid_json": 1, "wrong_type": 1, "not_an_object": 1}


def test_warehouse_down_hands_back_only_the_loadable_records(
    queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    with TcpFaultProxy(
        str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))
    ) as proxy:
        dsn = f"postgresql://127.0.0.1:{proxy.port}/{params.get('dbname', 'test')}?sslmode=disable"
        made, lines = start(lambda_env(queues, dsn, table_name))
        try:
            assert failures(made.handle(event([record(appsflyer(0))]), FakeContext())) == []
            proxy.reset(refuse_new=True)  # the warehouse goes away
            good = [record(appsflyer(i), message_id=f"good-{i}") for i in range(1, 4)]
            bad = record("{", message_id="poison")
            answer = made.handle(event([good[0], bad, *good[1:]]), FakeContext())
            assert failures(answer) == ["good-1", "good-2", "good-3"]
            assert sqs.dlq_reasons(queues.endpoint, queues.dlq_url) == {"invalid_json": 1}
            assert lines.last["LoadFailures"] >= 1 and lines.last["BatchItemFailures"] == 3
            proxy.heal()  # back: the same records, redelivered, load
            assert failures(made.handle(event(good), FakeContext())) == []
        finally:
            made.close()
    assert len(rows(pg_dsn, table_name)) == 4


def test_the_dlq_unreachable_hands_back_the_poison_only(
    queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    env = lambda_env(queues, pg_dsn, table_name)
    made, _ = start(env)
    try:
        made.handle(event([record(appsflyer(0))]), FakeContext())  # DLQ client and limit read
        sqs.with_client(queues.endpoint, lambda c: c.delete_queue(QueueUrl=queues.dlq_url))
        answer = made.handle(
            event([record(appsflyer(1)), record("{", message_id="poison")]), FakeContext()
        )
        assert failures(answer) == ["poison"]
    finally:
        made.close()
    assert len(rows(pg_dsn, table_name)) == 2


def test_a_terminated_backend_is_replaced_by_the_next_invocation(
    queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    made, lines = start(lambda_env(queues, pg_dsn, table_name))
    try:
        assert failures(made.handle(event([record(appsflyer(0))]), FakeContext())) == []
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"sluice-{WORKER}",),
            ).fetchall()
        assert ended == [(True,)]  # one connection per container
        answer = made.handle(event([record(appsflyer(1))]), FakeContext())
        assert failures(answer) == []
        assert lines.last["Inserted"] == 1
    finally:
        made.close()
    assert len(rows(pg_dsn, table_name)) == 2


def test_no_time_left_hands_everything_back_and_loads_nothing(
    queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    made, lines = start(lambda_env(queues, pg_dsn, table_name))
    try:
        records = [record(appsflyer(i)) for i in range(4)] + [record("{", message_id="poison")]
        answer = made.handle(event(records), FakeContext(lambda: 3_000))  # under the margin
        assert failures(answer) == [str(r["messageId"]) for r in records]
        assert lines.last["NotReachedBeforeDeadline"] == 5
    finally:
        made.close()
    assert rows(pg_dsn, table_name) == []
    assert sqs.depth(queues.endpoint, queues.dlq_url).total == 0


class CountingSink:
    """Wraps a sink; ``loads`` counts the loads that committed."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, batch: Sequence[MappedRow]) -> LoadResult:
        result = await self.inner.load(batch)
        self.loads += 1
        return result


def test_the_deadline_coming_near_stops_between_batches(
    queues: sqs.Queues, pg_dsn: str, table_name: str
) -> None:
    sinks: list[CountingSink] = []

    def factory(settings: Settings, mapping: TableMapping) -> Sink:
        sinks.append(CountingSink(build_sink(settings, mapping)))
        return sinks[-1]  # type: ignore[return-value]

    env = lambda_env(queues, pg_dsn, table_name, SLUICE_BATCH_MAX_ROWS="2")
    made, lines = start(env, sink_factory=factory)
    try:
        # Time runs short while the first batch loads: 60 s before it, 1 s after.
        context = FakeContext(lambda: 60_000 if sinks[0].loads == 0 else 1_000)
        records = [record(appsflyer(i), message_id=f"m-{i}") for i in range(6)]
        answer = made.handle(event(records), context)
        assert failures(answer) == ["m-2", "m-3", "m-4", "m-5"]
        assert lines.last["Inserted"] == 2 and lines.last["NotReachedBeforeDeadline"] == 4
    finally:
        made.close()
    assert [r[0] for r in rows(pg_dsn, table_name)] == ["m-0", "m-1"]


def test_the_module_handler_builds_its_container_from_the_environment_once(
    queues: sqs.Queues,
    pg_dsn: str,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = lambda_env(queues, pg_dsn, table_name)
    env |= {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start(env, create=True)[0].close()  # the table
    try:
        assert failures(module_handler(event([record(appsflyer(1))]), FakeContext())) == []
        built = CONTAINER.built
        assert failures(module_handler(event([record(appsflyer(2))]), FakeContext())) == []
        assert CONTAINER.built is built  # reused, with its connection
    finally:
        CONTAINER.reset()
        import structlog

        structlog.reset_defaults()
    emf = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert [line["Inserted"] for line in emf] == [1, 1]
    assert len(rows(pg_dsn, table_name)) == 2
