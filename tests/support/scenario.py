"""Shared steps of the crash, race and SQS-fault scenarios: send a plan, run workers,
gather what ended where, and judge it with the total-queue checker.

Everything here reads the real systems directly: rows from PostgreSQL, dead letters from
the DLQ, the depth from SQS. Nothing trusts a worker's own account of what it did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from sluice.mapping import load_mapping
from sluice.tools.checker import CheckReport, Sent, check, key_function
from sluice.tools.synth import SyntheticMessage, synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import final_stats, log_events
from tests.support.worker import Worker, init_db, start_worker, wait_for, worker_env

MIN_THROUGH = 1000  # the checker's minimum: a stalled run cannot pass


@dataclass(frozen=True)
class Scenario:
    """One queue (with its DLQ), one target table, and what was sent to the queue."""

    queues: sqs.Queues
    dsn: str
    table: str
    plan: list[SyntheticMessage]

    @property
    def endpoint(self) -> str:
        return self.queues.endpoint

    def env(
        self, extra: Mapping[str, str] | None = None, *, endpoint: str | None = None
    ) -> dict[str, str]:
        """A worker's environment; ``endpoint`` points it at a proxy instead of the emulator."""
        return worker_env(
            endpoint=endpoint or self.endpoint,
            queue_url=self.queues.url,
            dlq_url=self.queues.dlq_url,
            table=self.table,
            database_url=self.dsn,
            extra=extra,
        )

    @property
    def malformed_bodies(self) -> set[str]:
        return {m.body for m in self.plan if not m.valid}


def plan(
    count: int, *, malformed_ratio: float, duplicate_ratio: float, seed: int
) -> list[SyntheticMessage]:
    return list(
        synthetic_stream(
            count, malformed_ratio=malformed_ratio, duplicate_ratio=duplicate_ratio, seed=seed
        )
    )


def prepare(
    endpoint: str,
    dsn: str,
    table: str,
    messages: Sequence[SyntheticMessage],
    *,
    max_receive: int = 10,
) -> Scenario:
    """Fresh queues, the target table created, and every message of ``messages`` sent."""
    queues = sqs.make_queues(endpoint, max_receive=max_receive)
    scenario = Scenario(queues, dsn, table, list(messages))
    init_db(scenario.env())
    sent = sqs.send(endpoint, queues.url, (m.body for m in scenario.plan))
    assert sent == len(scenario.plan)
    return scenario


def drain(env: Mapping[str, str], log: Path, timeout: float = 60) -> dict[str, Any]:
    """Run one `sluice run --drain` to the end; its final stats line."""
    worker = start_worker(env, log, "--drain")
    code = worker.wait(timeout=timeout)
    assert code == 0, f"drain exited {code}:\n{worker.log[-3000:]}"
    return final_stats(worker.log)


def start_draining(env: Mapping[str, str], log: Path) -> Worker:
    return start_worker(env, log, "--drain")


# -- what ended where -----------------------------------------------------------------------


def target_rows(dsn: str, table: str) -> dict[str, int]:
    """dedupe_key -> number of rows, straight from PostgreSQL."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT dedupe_key, count(*) FROM "{table}" GROUP BY 1').fetchall()
    return {str(key): int(n) for key, n in rows}


def row_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(found[0]) if found else 0


def sessions_of(dsn: str, worker_ids: Iterable[str]) -> int:
    """Open PostgreSQL sessions of these workers (their application_name is sluice-<id>)."""
    names = [f"sluice-{w}"[:63] for w in worker_ids]
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)
        ).fetchone()
    return int(found[0]) if found else 0


def wait_sessions_gone(dsn: str, worker_ids: Iterable[str], timeout: float = 10) -> None:
    """Once a killed worker's sessions are gone, whatever it was committing is settled."""
    listed = list(worker_ids)
    wait_for(lambda: sessions_of(dsn, listed) == 0, timeout, f"sessions of {listed} to end")


def queue_depth(scenario: Scenario) -> int:
    """Messages still in the queue, visible or in flight (or delayed)."""
    return sqs.depth(scenario.endpoint, scenario.queues.url).total


@dataclass(frozen=True)
class Outcome:
    report: CheckReport
    rows: dict[str, int]
    dlq_raw: int  # dead letters in the DLQ, repeats included
    dlq_distinct: int


def assert_all_accounted(scenario: Scenario) -> Outcome:
    """Run the checker over what is in PostgreSQL, the DLQ and the queue; it must pass.

    Also: every malformed body is in the DLQ. The checker cannot see a malformed message
    that vanished (deleted without being dead-lettered), so that is checked here.
    """
    rows = target_rows(scenario.dsn, scenario.table)
    raw = sqs.dlq_bodies(scenario.endpoint, scenario.queues.dlq_url)
    # A worker killed after SendMessageBatch to the DLQ but before deleting the source
    # message dead-letters it again on redelivery: the DLQ is at-least-once, so the same
    # dead letter may be there twice. Compare by distinct body; the checker is given each
    # body once, so `dead_lettered` counts messages, not copies.
    distinct = sorted(set(raw))
    report = check(
        (Sent(m.body, m.valid) for m in scenario.plan),
        rows,
        distinct,
        queue_depth(scenario),
        key_function(load_mapping(None, scenario.table)),
        min_messages=MIN_THROUGH,
    )
    assert report.ok, report.summary()
    missing = scenario.malformed_bodies - set(distinct)
    assert not missing, f"{len(missing)} malformed message(s) neither loaded nor dead-lettered"
    return Outcome(report, rows, len(raw), len(distinct))


# -- reading worker logs ----------------------------------------------------------------


def events(text: str, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(text) if e.get("event") == name]


def total(stats: Iterable[Mapping[str, Any]], field: str) -> int:
    return sum(int(s[field]) for s in stats)
