"""`sluice demo`: the whole path on a laptop, no AWS account, and a reconciled report.

Starts the SQS emulator, creates a queue with a DLQ and a redrive policy, sends synthetic
AppsFlyer events (some malformed, some duplicated), drains them into a DuckDB file, and
checks every count against what was sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sluice.config import Settings, load_settings
from sluice.errors import FailureReason
from sluice.extras import DUCKDB, missing_extra
from sluice.local.emulator import EMULATOR_CREDENTIALS
from sluice.mapping import load_mapping
from sluice.observe.stats import WorkerCounters
from sluice.runtime.worker import RunSummary, build_sink, run_worker
from sluice.sinks.sql import quote_table
from sluice.sources.sqs import SqsQueue, call, sqs_client
from sluice.tools.checker import CheckReport, Sent, check, key_function
from sluice.tools.dlq import peek, release
from sluice.tools.sender import send_bodies
from sluice.tools.synth import SyntheticMessage, synthetic_stream

try:  # an extra (pyproject.toml): the demo loads into DuckDB
    import duckdb
except ImportError as exc:
    raise missing_extra("`sluice demo`", DUCKDB) from exc

QUEUE = "sluice-demo"
DEAD_LETTER_QUEUE = "sluice-demo-dlq"


@dataclass(frozen=True)
class Expected:
    rows: int
    duplicates: int
    dead_letters: Counter[str]

    @classmethod
    def of(cls, plan: list[SyntheticMessage]) -> Expected:
        reasons = Counter(m.expected_reason.value for m in plan if m.expected_reason)
        return cls(
            rows=sum(1 for m in plan if m.valid and m.duplicate_of is None),
            duplicates=sum(1 for m in plan if m.duplicate_of is not None),
            dead_letters=reasons,
        )


@dataclass(frozen=True)
class DemoReport:
    sent: int
    expected: Expected
    rows_in_table: int
    duplicates_absorbed: int
    dead_letters_counted: Counter[str]
    dead_letters_in_dlq: Counter[str]
    left_in_queue: int
    check: CheckReport
    send_seconds: float
    drain_seconds: float
    database: str

    @property
    def problems(self) -> list[str]:
        found = []
        if self.rows_in_table != self.expected.rows:
            found.append(f"rows: {self.rows_in_table} in the table, {self.expected.rows} expected")
        if self.duplicates_absorbed != self.expected.duplicates:
            found.append(
                f"duplicates absorbed: {self.duplicates_absorbed}, {self.expected.duplicates} sent"
            )
        if self.dead_letters_counted != self.expected.dead_letters:
            found.append(
                f"dead letters by reason: {dict(self.dead_letters_counted)}, "
                f"expected {dict(self.expected.dead_letters)}"
            )
        if self.dead_letters_in_dlq != self.expected.dead_letters:
            found.append(
                f"DLQ holds {dict(self.dead_letters_in_dlq)}, "
                f"expected {dict(self.expected.dead_letters)}"
            )
        if self.left_in_queue:
            found.append(f"{self.left_in_queue} message(s) still in the queue")
        if not self.check.ok:
            found.append(f"total-queue check: {self.check.summary()}")
        return found


async def create_demo_queues(client: Any, visibility: int) -> tuple[str, str]:
    dlq_url = (await call(client.create_queue, "CreateQueue", QueueName=DEAD_LETTER_QUEUE))[
        "QueueUrl"
    ]
    attrs = await call(
        client.get_queue_attributes,
        "GetQueueAttributes",
        QueueUrl=dlq_url,
        AttributeNames=["QueueArn"],
    )
    redrive = {"deadLetterTargetArn": attrs["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
    queue_url = (
        await call(
            client.create_queue,
            "CreateQueue",
            QueueName=QUEUE,
            Attributes={
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": orjson.dumps(redrive).decode(),
            },
        )
    )["QueueUrl"]
    for url in (queue_url, dlq_url):
        await call(client.purge_queue, "PurgeQueue", QueueUrl=url)
    return queue_url, dlq_url


async def run_demo(
    endpoint: str,
    messages: int,
    database: Path,
    *,
    on_sent: Callable[[int], None] | None = None,
    on_progress: Callable[[WorkerCounters], None] | None = None,
    seed: int = 7,
) -> DemoReport:
    plan = list(synthetic_stream(messages, seed=seed))
    for leftover in (database, database.with_name(database.name + ".wal")):
        leftover.unlink(missing_ok=True)
    flags: dict[str, object] = {
        "sqs_endpoint_url": endpoint,
        "sink": "duckdb",
        "duckdb_path": str(database),
        "worker_id": "demo-1",
        "port": 0,
        "log_level": "warning",
        "receive_concurrency": 8,
        "batch_max_rows": 5000,
        "batch_max_age": 1.0,
    }
    defaults = Settings()
    async with sqs_client(defaults.aws_region, endpoint, 32, EMULATOR_CREDENTIALS) as client:
        queue_url, dlq_url = await create_demo_queues(client, defaults.visibility_timeout)
        started = time.monotonic()
        await send_bodies(client, queue_url, (m.body for m in plan), on_sent=on_sent)
        send_seconds = time.monotonic() - started
        settings = load_settings({}, flags | {"queue_url": queue_url, "dlq_url": dlq_url})
        sink = build_sink(settings, load_mapping(None, settings.table_name))
        await sink.open()
        await sink.create_table()
        await sink.close()
        summary: RunSummary = await run_worker(
            settings,
            drain=True,
            credentials=EMULATOR_CREDENTIALS,
            on_progress=on_progress,
            handle_signals=False,
        )
        dead, _ = await peek(client, dlq_url, limit=messages)
        await release(client, dlq_url, dead)
        left = (await SqsQueue(client, queue_url).depth()).total
    with duckdb.connect(str(database), read_only=True) as con:
        keyed = con.execute(
            f"SELECT dedupe_key, count(*) FROM {quote_table(settings.table_name)} GROUP BY 1"
        ).fetchall()
    rows = {str(key): int(n) for key, n in keyed}
    mapping = load_mapping(None, settings.table_name)
    report = check(
        (Sent(m.body, m.valid) for m in plan),
        rows,
        (d.message.body for d in dead),
        left,
        key_function(mapping),
        min_messages=min(1000, messages // 2),
    )
    counted = Counter({r.value: n for r, n in summary.counters.dead_lettered.items()})
    counted.update({r.value: n for r, n in summary.counters.left_to_redrive.items()})
    return DemoReport(
        sent=len(plan),
        expected=Expected.of(plan),
        rows_in_table=sum(rows.values()),
        duplicates_absorbed=summary.counters.duplicates,
        dead_letters_counted=counted,
        dead_letters_in_dlq=Counter(d.reason for d in dead),
        left_in_queue=left,
        check=report,
        send_seconds=send_seconds,
        drain_seconds=summary.seconds,
        database=str(database),
    )


def reason_label(reason: str) -> str:
    known = {r.value for r in FailureReason}
    return reason if reason in known else f"{reason} (not from Sluice)"
