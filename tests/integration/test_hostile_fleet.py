"""A hostile corpus against two real workers under a supervisor, on a queue with no redrive
policy: every poison message reaches the DLQ once with its reason, distinct events with big
numbers stay distinct, a column changed mid-run holds messages instead of dead-lettering them,
no worker exits non-zero, and the total-queue checker passes."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.tools.checker import Sent, check, key_function
from sluice.tools.synth import synthetic_stream
from tests.integration.test_supervisor import events, supervisor_env
from tests.support import sqs
from tests.support.fault_proxy import dlq_entries
from tests.support.worker import init_db, start_worker, wait_for

GOOD = {"event_name": "af_purchase", "event_time": "2026-11-27 10:00:00.123"}
SQS_BODY_LIMIT = 1024 * 1024


def event(appsflyer_id: str, **fields: object) -> str:
    return orjson.dumps({"appsflyer_id": appsflyer_id, **GOOD, **fields}).decode()


def with_raw(appsflyer_id: str, name: str, raw: str) -> str:
    """An event with one field written as raw JSON text (numbers exactly as given)."""
    return event(appsflyer_id)[:-1] + f',"{name}":{raw}}}'


def nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


POISON: dict[str, str] = {
    # The three inputs that crashed every worker before.
    event("p-overflow", event_revenue="1e1000000"): "out_of_range",
    with_raw("p-nul", "deep", nested(500, '"a\\u0000"')): "invalid_character",
    # A body at SQS's limit that is not JSON: its dead letter must still fit.
    "{" + "x" * (SQS_BODY_LIMIT - 300): "invalid_json",
}
DISTINCT: list[str] = [
    with_raw("big-1", "n", "123456789012345678901234567890"),
    with_raw("big-2", "n", "123456789012345678901234567891"),
    with_raw("dec-1", "n", "0.30000000000000001"),
    with_raw("dec-2", "n", "0.3"),
    with_raw("deep-1", "deep", nested(300, "0")),  # deeper than orjson writes: still a row
]


def queues_without_redrive(endpoint: str) -> sqs.Queues:
    name = f"q-{uuid.uuid4().hex[:10]}"

    async def work(client: Any) -> sqs.Queues:
        dlq = (await client.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
        url = (await client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"}))[
            "QueueUrl"
        ]
        return sqs.Queues(endpoint, url, dlq)

    return sqs.with_client(endpoint, work)


def test_hostile_corpus_two_workers_no_redrive(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = queues_without_redrive(emulator.endpoint)
    env, _ = supervisor_env(emulator, queues, table_name, pg_dsn, tmp_path)
    init_db(env)
    first = [m.body for m in synthetic_stream(300, malformed_ratio=0, duplicate_ratio=0, seed=31)]
    second = [m.body for m in synthetic_stream(300, malformed_ratio=0, duplicate_ratio=0, seed=32)]
    sqs.send(emulator.endpoint, queues.url, [*POISON, *DISTINCT, *first])
    log = tmp_path / "supervisor.log"
    supervisor = start_worker(env, log, "--processes", "2")

    def rows() -> int:
        with psycopg.connect(pg_dsn) as conn:
            found = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
        return int(found[0]) if found else 0

    def dead() -> dict[str, str]:
        return dict(dlq_entries(emulator.endpoint, queues.dlq_url))

    try:
        wait_for(lambda: rows() == len(first) + len(DISTINCT), 120, "the first events loaded")
        wait_for(lambda: len(dead()) == len(POISON), 60, "every poison message dead-lettered")

        # The table changes under the workers: every row now fails with a class-22 error.
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f'ALTER TABLE "{table_name}" ALTER COLUMN platform TYPE integer USING NULL'
            )
        sqs.send(emulator.endpoint, queues.url, second)
        wait_for(
            lambda: '"table_rejects_rows"' in log.read_text(errors="replace"),
            60,
            "a worker to blame the table",
        )
        assert len(dead()) == len(POISON), "valid messages were dead-lettered"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{table_name}" ALTER COLUMN platform TYPE text USING NULL')
        total = len(first) + len(second) + len(DISTINCT)
        wait_for(lambda: rows() == total, 120, "every valid event loaded once the table is fixed")
    finally:
        supervisor.signal(signal.SIGTERM)
        code = supervisor.wait(timeout=60)
    text = supervisor.log
    assert code == 0, text[-3000:]
    exits = events(text, "worker_exited")
    assert exits and all(e["code"] == 0 for e in exits), exits
    assert len(exits) == 2, f"a worker was restarted: {exits}"

    letters = dead()
    assert letters == POISON, {body[:60]: reason for body, reason in letters.items()}
    with psycopg.connect(pg_dsn) as conn:
        keyed = dict(
            conn.execute(f'SELECT dedupe_key, count(*) FROM "{table_name}" GROUP BY 1').fetchall()
        )
        ids = {str(r[0]) for r in conn.execute(f'SELECT appsflyer_id FROM "{table_name}"')}
    assert {"big-1", "big-2", "dec-1", "dec-2", "deep-1"} <= ids  # two events, two rows
    valid = {*DISTINCT, *first, *second}
    report = check(
        [Sent(b, b in valid) for b in [*POISON, *valid]],
        {str(k): int(n) for k, n in keyed.items()},
        letters.keys(),
        sqs.depth(emulator.endpoint, queues.url).total,
        key_function(load_mapping(None, table_name)),
        min_messages=600,
    )
    assert report.ok, report.summary()
