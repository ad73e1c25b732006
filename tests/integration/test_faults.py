"""Crashes between receive and delete, redelivery, and a flaky SQS: nothing lost, nothing doubled.

Real processes throughout: the fauxqs emulator, PostgreSQL, and `python -m sluice run`
workers. A crashing worker SIGKILLs itself at a named step (SLUICE_FAULT_POINT); a fresh
worker then drains the queue, waiting for the dead worker's messages to reappear after
their visibility timeout (6 s in ``worker_env``).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from sluice.aws_errors import AwsService, classify
from sluice.config import SqsClientKind
from sluice.errors import TransientError
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.sources.sqs import sqs_client
from sluice.tools.synth import SyntheticMessage, synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import (
    FaultProxy,
    assert_exactly_once,
    expected_keys,
    final_stats,
    log_events,
)
from tests.support.worker import init_db, start_worker, worker_env

# Which hit of each fault point kills the worker: late enough that some work is done first.
FAULT_AFTER = {
    "after_receive": "8",
    "mid_staging": "2",
    "before_commit": "2",
    "after_commit": "2",
    "mid_delete": "2",
}


def _plan(count: int, seed: int) -> list[SyntheticMessage]:
    return list(synthetic_stream(count, malformed_ratio=0.05, duplicate_ratio=0.05, seed=seed))


def _message_ids(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT dedupe_key, message_id FROM "{table}"').fetchall()
    return {str(k): str(m) for k, m in rows}


def _drain(env: dict[str, str], log: Path, timeout: float = 60) -> dict[str, Any]:
    worker = start_worker(env, log, "--drain")
    assert worker.wait(timeout=timeout) == 0, worker.log[-3000:]
    return final_stats(worker.log)


@pytest.mark.parametrize("point", list(FAULT_AFTER))
def test_sigkill_at_fault_point_then_drain_loads_everything_once(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, point: str
) -> None:
    plan = _plan(600, seed=sorted(FAULT_AFTER).index(point) + 20)
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
    )
    init_db(env)

    faulty = env | {"SLUICE_FAULT_POINT": point, "SLUICE_FAULT_AFTER": FAULT_AFTER[point]}
    crashing = start_worker(faulty, tmp_path / "crash.log")
    assert crashing.wait(timeout=60) == -signal.SIGKILL, crashing.log[-3000:]
    assert not any(e.get("event") == "stopped" for e in log_events(crashing.log))
    committed = _message_ids(pg_dsn, table_name)
    keys = expected_keys(plan, table_name)
    if point in ("after_commit", "mid_delete"):
        assert committed, "the crash came before any commit"
    else:
        assert len(committed) < len(keys), "the crash came after everything was loaded"

    with FaultProxy(emulator.endpoint) as proxy:  # only watching what the drain receives
        stats = _drain(env | {"AWS_ENDPOINT_URL_SQS": proxy.url}, tmp_path / "drain.log")
        received = proxy.received_message_ids()

    counts = assert_exactly_once(dsn=pg_dsn, table=table_name, plan=plan, queues=queues)
    assert stats["rowsInserted"] == len(keys) - len(committed)
    assert max(counts.per_key.values()) == 1
    # Rows committed before the crash keep the message_id they were loaded from, even
    # when that very message came back after its visibility timeout and was merged again.
    after = _message_ids(pg_dsn, table_name)
    assert {k: after[k] for k in committed} == committed
    redelivered = set(received) & set(committed.values())
    if point == "after_commit":
        # The crashed batch was committed but not deleted: it came back and collapsed.
        assert redelivered, "no committed message was delivered again"
        assert stats["duplicatesAbsorbed"] >= len(redelivered)


def test_same_event_sent_twice_and_again_later_is_one_row(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    plan = list(synthetic_stream(300, malformed_ratio=0.0, duplicate_ratio=0.0, seed=5))
    bodies = [m.body for m in plan]
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
    )
    init_db(env)

    # Two sends of each body: two messages (two message ids) carrying the same event.
    sqs.send(emulator.endpoint, queues.url, bodies + bodies)
    first = _drain(env, tmp_path / "first.log")
    assert first["rowsInserted"] == 300
    assert first["duplicatesAbsorbed"] == 300
    ids = _message_ids(pg_dsn, table_name)

    # The producer retries much later: a third message per event, merged into nothing.
    sqs.send(emulator.endpoint, queues.url, bodies)
    second = _drain(env, tmp_path / "second.log")
    assert second["rowsInserted"] == 0
    assert second["duplicatesAbsorbed"] == 300

    counts = assert_exactly_once(
        dsn=pg_dsn, table=table_name, plan=plan, queues=queues, dlq_may_repeat=False
    )
    assert counts.rows == 300
    assert _message_ids(pg_dsn, table_name) == ids  # the first load wins


@pytest.mark.parametrize(("fraction", "client"), [(1.0, "wire"), (0.3, "wire"), (1.0, "botocore")])
def test_failed_delete_entries_are_retried_until_deleted(
    emulator: Emulator,
    pg_dsn: str,
    table_name: str,
    tmp_path: Path,
    fraction: float,
    client: str,
) -> None:
    plan = _plan(500, seed=31)
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    with FaultProxy(emulator.endpoint, fail_new_delete_entries=fraction) as proxy:
        env = worker_env(
            endpoint=proxy.url,
            queue_url=queues.url,
            dlq_url=queues.dlq_url,
            table=table_name,
            database_url=pg_dsn,
            extra={"SLUICE_SQS_CLIENT": client},
        )
        init_db(env)
        worker = start_worker(env, tmp_path / "worker.log", "--drain")
        assert worker.wait(timeout=60) == 0, worker.log[-3000:]
        calls = proxy.calls("DeleteMessageBatch")
        handles = proxy.delete_handle_counts()
        injected = proxy.injected("entry_failures")

    assert_exactly_once(
        dsn=pg_dsn, table=table_name, plan=plan, queues=queues, dlq_may_repeat=False
    )
    stats = final_stats(worker.log)
    # Every message was received once: no delete was lost, so nothing came back.
    assert stats["messagesReceived"] == len(plan)
    assert not any(e.get("event") == "delete_failed" for e in log_events(worker.log))
    assert len(handles) == len(plan)
    # Each injected failure was retried once and then deleted; no entry more than twice.
    assert sum(1 for n in handles.values() if n == 2) == injected
    assert set(handles.values()) <= {1, 2}
    if fraction == 1.0:
        assert injected == len(plan)
    else:
        assert 0.15 * len(plan) < injected < 0.45 * len(plan)
    # Bounded calls: entries go ten to a call (a batch's last group may be short), and a
    # failed entry is retried once, not in a loop.
    entries = len(plan) + injected
    assert calls <= 3 * -(-entries // 10), calls


@pytest.mark.parametrize(
    ("kind", "client"), [("throttle", "wire"), ("500", "wire"), ("throttle", "botocore")]
)
def test_receive_errors_are_retried_with_backoff(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, kind: str, client: str
) -> None:
    plan = _plan(400, seed=41)
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    window = 3.0
    with FaultProxy(emulator.endpoint) as proxy:
        env = worker_env(
            endpoint=proxy.url,
            queue_url=queues.url,
            dlq_url=queues.dlq_url,
            table=table_name,
            database_url=pg_dsn,
            extra={"SLUICE_RETRY_MAX_BACKOFF": "2", "SLUICE_SQS_CLIENT": client},
        )
        init_db(env)
        proxy.fail_action_for(window, action="ReceiveMessage", kind=kind)  # type: ignore[arg-type]
        worker = start_worker(env, tmp_path / "worker.log", "--drain")
        assert worker.wait(timeout=60) == 0, worker.log[-3000:]
        injected = proxy.injected(f"ReceiveMessage:{kind}")

    assert_exactly_once(
        dsn=pg_dsn, table=table_name, plan=plan, queues=queues, dlq_may_repeat=False
    )
    failures = [e for e in log_events(worker.log) if e.get("event") == "receive_failed"]
    assert injected > 0
    if client == "wire":
        # The wire client does not retry by itself: every injected error reaches the pipeline.
        # botocore retries throttling and 5xx up to three times on its own first, so within a
        # 3 s window its retries may absorb every error before the pipeline sees one.
        assert len(failures) == injected, (len(failures), injected)
    # Four receivers for three seconds: a hot loop would make hundreds of calls. (With
    # botocore, its own retries are among these calls.)
    receivers = int(env["SLUICE_RECEIVE_CONCURRENCY"])
    assert injected <= receivers * 12, injected


@pytest.mark.parametrize("client", list(SqsClientKind))
def test_proxy_errors_look_like_sqs_errors(emulator: Emulator, client: SqsClientKind) -> None:
    """The injected throttling and 5xx parse, through either SQS client, as SQS's own would."""
    queues = sqs.make_queues(emulator.endpoint)

    def receive(endpoint: str) -> ClientError | None:
        async def go() -> ClientError | None:
            async with sqs_client(sqs.REGION, endpoint, 4, EMULATOR_CREDENTIALS, client) as c:
                try:
                    await c.receive_message(QueueUrl=queues.url, WaitTimeSeconds=0)
                except ClientError as exc:
                    return exc
            return None

        return asyncio.run(go())

    with FaultProxy(emulator.endpoint) as proxy:
        proxy.fail_action_for(60, kind="throttle")
        throttled = receive(proxy.url)
        proxy.fail_action_for(60, kind="500")
        failed = receive(proxy.url)
        proxy.heal()
        assert receive(proxy.url) is None
        tries = proxy.injected("ReceiveMessage:throttle")

    assert throttled is not None
    assert throttled.response["Error"]["Code"] == "Throttling"
    assert throttled.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert isinstance(classify(AwsService.SQS, "ReceiveMessage", throttled), TransientError)
    assert failed is not None
    assert failed.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert isinstance(classify(AwsService.SQS, "ReceiveMessage", failed), TransientError)
    # botocore retries a throttle itself (max_attempts=3 retries after the first try, as
    # for a real throttle); the wire client leaves retrying to the pipeline.
    assert tries == (4 if client is SqsClientKind.BOTOCORE else 1)
