"""Dead letters at SQS's limits, against the emulator and a real worker process.

fauxqs enforces what AWS does here: a message (body plus every attribute's name, type and
value) must fit the queue's MaximumMessageSize (1 MiB by default in fauxqs), and a
SendMessageBatch's summed payload must fit 1 MiB (``BatchRequestTooLong``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.local.emulator import Emulator
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.worker import init_db, run_sluice, start_worker, worker_env

MIB = 1024 * 1024


def make_queue(endpoint: str, **attributes: str) -> str:
    async def work(client: Any) -> str:
        name = f"q-{uuid.uuid4().hex[:10]}"
        made = await client.create_queue(QueueName=name, Attributes=attributes)
        return str(made["QueueUrl"])

    return sqs.with_client(endpoint, work)


def with_redrive(endpoint: str, dlq_url: str, max_receive: int = 2) -> str:
    """A source queue whose redrive policy moves a message to ``dlq_url``."""

    async def work(client: Any) -> str:
        arn = (await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        redrive = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive)})
        made = await client.create_queue(
            QueueName=f"q-{uuid.uuid4().hex[:10]}",
            Attributes={"VisibilityTimeout": "6", "RedrivePolicy": redrive.decode()},
        )
        return str(made["QueueUrl"])

    return sqs.with_client(endpoint, work)


def poison(size: int, tag: str) -> str:
    """Invalid JSON (truncated) of exactly ``size`` bytes."""
    head = f'{{"appsflyer_id":"{tag}","note":"'
    return head + "x" * (size - len(head))


def dlq_letters(endpoint: str, dlq_url: str) -> dict[str, dict[str, str]]:
    """body -> its attributes' text values, every letter released again."""

    async def work(client: Any) -> dict[str, dict[str, str]]:
        response: dict[str, dict[str, str]] = {}
        for _ in range(20):
            got = await client.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=30,
                MessageAttributeNames=["All"],
            )
            batch = got.get("Messages", [])
            if not batch:
                break
            for m in batch:
                attrs = m.get("MessageAttributes", {})
                response[m["Body"]] = {k: str(v.get("StringValue", "")) for k, v in attrs.items()}
                await client.change_message_visibility(
                    QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        return response

    return sqs.with_client(endpoint, work)


@pytest.mark.parametrize("client", ["wire", "botocore"])
def test_a_poison_message_near_1_mib_is_dead_lettered_with_its_reason(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, client: str
) -> None:
    """Before: body + Sluice's attributes > 1 MiB, the send failed, the message cycled."""
    dlq = make_queue(emulator.endpoint)
    source = with_redrive(emulator.endpoint, dlq, max_receive=50)
    big = poison(MIB - 300, "near-limit")
    valid = [m.body for m in synthetic_stream(50, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, source, [big, *valid])
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=source,
        dlq_url=dlq,
        table=table_name,
        database_url=pg_dsn,
        extra={"SLUICE_SQS_CLIENT": client},
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]
    letters = dlq_letters(emulator.endpoint, dlq)
    assert list(letters) == [big]  # the body intact, sent once
    attrs = letters[big]
    assert attrs["sluice.reason"] == "invalid_json"
    assert attrs["sluice.detail"]  # shrunk to fit, never empty
    assert "dead_letter_send_failed" not in worker.log
    assert sqs.depth(emulator.endpoint, source).total == 0


def test_a_dlq_smaller_than_the_source_is_named_at_start_and_letters_are_fitted(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    small = 256 * 1024
    dlq = make_queue(emulator.endpoint, MaximumMessageSize=str(small))
    source = with_redrive(emulator.endpoint, dlq, max_receive=2)
    fits = poison(small - 200, "fits-once-detail-shrinks")
    too_big = poison(small + 10_000, "cannot-fit")
    little = poison(100, "little")
    sqs.send(emulator.endpoint, source, [fits, too_big, little])
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
    log = worker.log
    warnings = [line for line in log.splitlines() if "dlq_smaller_than_queue" in line]
    assert len(warnings) == 1
    assert "SLUICE_DLQ_URL" in warnings[0] and "SQS_QUEUE_URL" in warnings[0]
    assert str(small) in warnings[0] and str(MIB) in warnings[0]
    failed = [line for line in log.splitlines() if "dead_letter_send_failed" in line]
    assert failed and all("too_large" in line for line in failed)
    letters = dlq_letters(emulator.endpoint, dlq)
    assert letters[fits]["sluice.reason"] == "invalid_json"
    assert letters[little]["sluice.reason"] == "invalid_json"
    # The one that cannot fit was left to the redrive policy, which moved it (no reason).
    assert "sluice.reason" not in letters[too_big]
    assert sqs.depth(emulator.endpoint, source).total == 0
    # The exit summary counts only what reached the DLQ.
    summary = next(line for line in log.splitlines() if line.startswith("drained:"))
    assert " 2 dead-lettered (" in summary and "not taken by the DLQ" in summary


def test_replay_and_send_file_group_large_bodies_by_size(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Before: 10 bodies of 200-256 KB in one call, BatchRequestTooLong: 2 of 12 replayed,
    the rest hidden and not deleted."""
    dlq = make_queue(emulator.endpoint)
    source = make_queue(emulator.endpoint)
    bodies = [poison(200_000 + i * 5_000, f"r{i}") for i in range(12)]
    lines = tmp_path / "bodies.txt"
    lines.write_text("\n".join(bodies) + "\n")
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=dlq,
        dlq_url=dlq,
        table="t",
        sink="duckdb",
        duckdb_path=str(tmp_path / "x.duckdb"),
    )
    sent = run_sluice("send", "--file", str(lines), env=env)
    assert sent.returncode == 0, sent.stderr
    assert sqs.depth(emulator.endpoint, dlq).total == 12

    env["SQS_QUEUE_URL"] = source
    replayed = run_sluice("dlq", "replay", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 12, left 0" in replayed.stderr
    assert sorted(sqs.dlq_bodies(emulator.endpoint, source)) == sorted(bodies)
    assert sqs.depth(emulator.endpoint, dlq).total == 0


def test_replay_keeps_what_the_source_refuses_in_the_dlq(
    emulator: Emulator, tmp_path: Path
) -> None:
    dlq = make_queue(emulator.endpoint)
    source = make_queue(emulator.endpoint, MaximumMessageSize="2048")
    small, large = poison(500, "small"), poison(5_000, "large")
    sqs.send(emulator.endpoint, dlq, [small, large])
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=source,
        dlq_url=dlq,
        table="t",
        sink="duckdb",
        duckdb_path=str(tmp_path / "x.duckdb"),
    )
    replayed = run_sluice("dlq", "replay", env=env)
    assert replayed.returncode == 1
    assert "replayed 1, left 1" in replayed.stderr
    assert "not replayed (left in the DLQ)" in replayed.stderr
    assert sqs.dlq_bodies(emulator.endpoint, source) == [small]
    assert sqs.dlq_bodies(emulator.endpoint, dlq) == [large]  # visible again, not deleted
