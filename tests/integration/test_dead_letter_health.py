"""Dead letters keep what the producer sent; failed DLQ sends are seen; FIFO is refused."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from sluice.config import SqsClientKind
from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator, free_port
from sluice.sources.sqs import sqs_client
from tests.integration.test_dead_letter_limits import make_queue, poison, with_redrive
from tests.integration.test_metrics import get, samples
from tests.support import sqs
from tests.support.worker import init_db, run_sluice, start_worker, wait_for, worker_env

PRODUCER_ATTRIBUTES = {
    "trace_id": {"DataType": "String", "StringValue": "abc-123"},
    "attempt": {"DataType": "Number", "StringValue": "3"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "shape": {"DataType": "String.custom", "StringValue": "round"},
}


def send_with_attributes(endpoint: str, url: str, body: str, attrs: dict[str, Any]) -> None:
    async def work(client: Any) -> None:
        await client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)

    sqs.with_client(endpoint, work)


def received_attributes(endpoint: str, url: str) -> list[tuple[str, dict[str, Any]]]:
    """(body, MessageAttributes) of what is on ``url``, as botocore gives them, released."""

    async def work(client: Any) -> list[tuple[str, dict[str, Any]]]:
        got = await client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        out = []
        for m in got.get("Messages", []):
            out.append((m["Body"], m.get("MessageAttributes", {})))
            await client.change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return out

    async def go() -> list[tuple[str, dict[str, Any]]]:
        async with sqs_client(
            sqs.REGION, endpoint, 4, EMULATOR_CREDENTIALS, SqsClientKind.BOTOCORE
        ) as client:
            return await work(client)

    return asyncio.run(go())


@pytest.mark.parametrize("client", ["wire", "botocore"])
def test_a_replayed_dead_letter_gives_back_the_producers_attributes(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, client: str
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    body = poison(200, "attributed")
    send_with_attributes(emulator.endpoint, queues.url, body, PRODUCER_ATTRIBUTES)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"SLUICE_SQS_CLIENT": client},
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]

    [(letter_body, letter_attrs)] = received_attributes(emulator.endpoint, queues.dlq_url)
    assert letter_body == body
    assert letter_attrs["sluice.reason"]["StringValue"] == "invalid_json"
    for name, value in PRODUCER_ATTRIBUTES.items():
        assert letter_attrs[name] == value

    replayed = run_sluice("dlq", "replay", env=env)
    assert replayed.returncode == 0, replayed.stderr
    [(again, attrs)] = received_attributes(emulator.endpoint, queues.url)
    assert again == body
    assert attrs == PRODUCER_ATTRIBUTES  # and none of Sluice's


def test_producer_attributes_beyond_sqs_ten_are_named_in_the_detail(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    body = poison(200, "many-attributes")
    many = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(8)}
    send_with_attributes(emulator.endpoint, queues.url, body, many)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]
    [(_, attrs)] = received_attributes(emulator.endpoint, queues.dlq_url)
    assert len(attrs) == 10
    assert {f"a{i}" for i in range(5)} <= set(attrs)
    assert "attributes not kept: a5, a6, a7" in attrs["sluice.detail"]["StringValue"]
    assert "dead_letter_attributes_dropped" in worker.log


def test_a_deleted_dlq_is_counted_logged_and_reported_by_readiness(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    dlq = make_queue(emulator.endpoint)
    source = make_queue(emulator.endpoint, VisibilityTimeout="2")
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=source,
        dlq_url=dlq,
        table=table_name,
        database_url=pg_dsn,
        extra={"PORT": str(port), "SLUICE_QUEUE_ATTRIBUTES_INTERVAL": "1"},
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "/readyz to turn ready")
        sqs.with_client(emulator.endpoint, lambda c: c.delete_queue(QueueUrl=dlq))
        sqs.send(emulator.endpoint, source, [poison(100, "poison")])

        def failures() -> float:
            found = samples(get(f"{base}/metrics")[1])
            return found.get(("sluice_dead_letter_send_failures_total", ()), 0.0)

        wait_for(lambda: failures() >= 2, 30, "two failed dead-letter sends to be counted")
        status, text = get(f"{base}/readyz")
        assert status == 503
        assert "DLQ: degraded: dead-letter sends failing" in text
        assert samples(get(f"{base}/metrics")[1])[("sluice_dead_letter_degraded", ())] == 1.0
        assert worker.log.count('"dead_letter_send_failed"') >= 2
        assert worker.process.poll() is None
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait(timeout=30)


def make_fifo(endpoint: str) -> str:
    async def work(client: Any) -> str:
        made = await client.create_queue(
            QueueName=f"q-{uuid.uuid4().hex[:10]}.fifo", Attributes={"FifoQueue": "true"}
        )
        return str(made["QueueUrl"])

    return sqs.with_client(endpoint, work)


@pytest.mark.parametrize("which", ["source", "dlq"])
@pytest.mark.parametrize("processes", [None, "2"])
def test_a_fifo_queue_is_refused_at_start_up_in_one_line(
    emulator: Emulator, pg_dsn: str, table_name: str, which: str, processes: str | None
) -> None:
    """Before: accepted; every dead letter failed (MissingParameter) and --drain never ended."""
    fifo = make_fifo(emulator.endpoint)
    standard = make_queue(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=fifo if which == "source" else standard,
        dlq_url=fifo if which == "dlq" else standard,
        table=table_name,
        database_url=pg_dsn,
    )
    args = ["run", "--drain", *(["--processes", processes] if processes else [])]
    done = run_sluice(*args, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    setting = "SQS_QUEUE_URL" if which == "source" else "SLUICE_DLQ_URL"
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and setting in lines[0] and "FIFO" in lines[0], done.stderr


def test_the_redrive_queue_alone_takes_what_the_dlq_cannot(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    """A letter refused by the DLQ is never deleted: it stays for the redrive policy."""
    dlq = make_queue(emulator.endpoint, MaximumMessageSize="1024")
    source = with_redrive(emulator.endpoint, dlq, max_receive=2)
    body = poison(2000, "refused-by-dlq")
    sqs.send(emulator.endpoint, source, [body])
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=source,
        dlq_url=dlq,
        table=table_name,
        database_url=pg_dsn,
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]
    assert sqs.dlq_bodies(emulator.endpoint, dlq) == [body]
    assert re.search(r"drained: .* 0 dead-lettered \(\d+ not taken by the DLQ\)", worker.log)
