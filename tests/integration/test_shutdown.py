"""SIGTERM and SIGINT against real workers: stop within the grace, lose nothing.

A load is held mid-flight by a second PostgreSQL session holding ``ACCESS EXCLUSIVE`` on
the target table, so the signal lands while a flush is blocked. ``worker_env`` sets
SLUICE_SHUTDOWN_GRACE=5 and SLUICE_VISIBILITY_TIMEOUT=6.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from sluice.local.emulator import Emulator
from sluice.sources.base import QueueDepth
from sluice.tools.synth import SyntheticMessage, synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import (
    FaultProxy,
    assert_exactly_once,
    has_event,
    table_counts,
)
from tests.support.worker import Worker, init_db, start_worker, wait_for, worker_env

MARGIN = 2.0  # seconds allowed past the grace: interpreter exit, closing connections


def _plan(count: int, seed: int) -> list[SyntheticMessage]:
    return list(synthetic_stream(count, malformed_ratio=0.05, duplicate_ratio=0.05, seed=seed))


@contextmanager
def _table_lock(dsn: str, table: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """ACCESS EXCLUSIVE on ``table`` until the caller commits (or the block ends)."""
    conn = psycopg.connect(dsn)
    try:
        conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _loads_waiting(dsn: str, table: str) -> int:
    """Worker sessions waiting for a lock on ``table``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND l.relation = %s::regclass"
            " AND a.application_name LIKE 'sluice-%%'",
            (f'"{table}"',),
        ).fetchone()
    return int(row[0]) if row else 0


class _Scene:
    """A queue with ``plan`` on it, a table, and a worker env, for one test."""

    def __init__(
        self,
        emulator: Emulator,
        dsn: str,
        table: str,
        plan: list[SyntheticMessage],
        endpoint: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.dsn = dsn
        self.table = table
        self.queues = sqs.make_queues(emulator.endpoint)
        self.env = worker_env(
            endpoint=endpoint or emulator.endpoint,
            queue_url=self.queues.url,
            dlq_url=self.queues.dlq_url,
            table=table,
            database_url=dsn,
            extra=extra,
        )
        self.grace = float(self.env["SLUICE_SHUTDOWN_GRACE"])
        init_db(self.env)

    def start(self, log: Path, *args: str) -> Worker:
        worker = start_worker(self.env, log, *args)
        wait_for(
            lambda: has_event(worker.log, "started") or worker.process.poll() is not None,
            30,
            "the worker to start",
        )
        assert worker.process.poll() is None, worker.log[-3000:]
        return worker

    def send_and_block(self, worker: Worker) -> None:
        """Send the plan; return once every message is held and a load waits on the lock."""
        sqs.send(self.queues.endpoint, self.queues.url, (m.body for m in self.plan))
        wait_for(lambda: _loads_waiting(self.dsn, self.table) > 0, 20, "a load blocked")
        wait_for(
            lambda: sqs.depth(self.queues.endpoint, self.queues.url).visible == 0,
            20,
            "every message received",
        )
        assert worker.process.poll() is None

    def depth(self) -> QueueDepth:
        return sqs.depth(self.queues.endpoint, self.queues.url)

    def drain_and_check(self, log: Path) -> None:
        drain = start_worker(self.env, log, "--drain")
        assert drain.wait(timeout=60) == 0, drain.log[-3000:]
        assert_exactly_once(dsn=self.dsn, table=self.table, plan=self.plan, queues=self.queues)


def _stop(worker: Worker, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(timeout=timeout)
    return code, time.monotonic() - started


def test_sigterm_during_blocked_flush_finishes_it_within_grace(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    scene = _Scene(emulator, pg_dsn, table_name, _plan(400, seed=51))
    worker = scene.start(tmp_path / "worker.log")
    with _table_lock(pg_dsn, table_name) as lock:
        scene.send_and_block(worker)
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        wait_for(lambda: has_event(worker.log, "stopping"), 5, "the worker to begin stopping")
        time.sleep(0.5)  # deliberately: let the shutdown wait on the blocked load a moment
        lock.commit()
        code = worker.wait(timeout=scene.grace + 10)
    elapsed = time.monotonic() - started
    assert code == 0, worker.log[-3000:]
    assert elapsed < scene.grace + MARGIN, elapsed
    assert has_event(worker.log, "stopped")
    # Everything held was loaded and deleted, or released: nothing waits out a visibility.
    assert scene.depth().in_flight == 0
    assert table_counts(pg_dsn, table_name).rows > 0
    scene.drain_and_check(tmp_path / "drain.log")


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(150, id="loads-blocked"),
        # At 200 rows a batch, two loads block (two load slots) and a third batch is
        # waiting for a slot when the signal comes.
        pytest.param(600, id="loads-blocked-and-a-batch-waiting-for-a-slot"),
    ],
)
def test_sigterm_with_load_blocked_past_grace_releases_and_exits(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, count: int
) -> None:
    plan = _plan(count, seed=52)
    scene = _Scene(emulator, pg_dsn, table_name, plan)
    worker = scene.start(tmp_path / "worker.log")
    with _table_lock(pg_dsn, table_name) as lock:
        scene.send_and_block(worker)
        code, elapsed = _stop(worker, timeout=scene.grace + 15)
        assert code == 0, worker.log[-3000:]
        assert elapsed < scene.grace + MARGIN, elapsed
        # Released at once (visibility 0), not left to expire.
        depth = scene.depth()
        assert (depth.visible, depth.in_flight) == (len(plan), 0), depth
        assert has_event(worker.log, "released")
        lock.commit()
    assert table_counts(pg_dsn, table_name).rows == 0
    scene.drain_and_check(tmp_path / "drain.log")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_exits_at_once(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, signum: int
) -> None:
    scene = _Scene(emulator, pg_dsn, table_name, _plan(300, seed=53))
    worker = scene.start(tmp_path / "worker.log")
    with _table_lock(pg_dsn, table_name) as lock:
        scene.send_and_block(worker)
        worker.signal(signum)
        wait_for(lambda: has_event(worker.log, "stopping"), 5, "the worker to begin stopping")
        started = time.monotonic()
        worker.signal(signum)
        code = worker.wait(timeout=scene.grace)
        elapsed = time.monotonic() - started
        lock.commit()
    assert code == 128 + signum, worker.log[-3000:]
    assert elapsed < 1.5, elapsed
    assert has_event(worker.log, "second_signal_exiting_now")
    assert not has_event(worker.log, "stopped")
    # The held messages come back after their visibility timeout; nothing is lost.
    scene.drain_and_check(tmp_path / "drain.log")


def test_sigterm_during_idle_long_poll_exits_promptly(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    with FaultProxy(emulator.endpoint) as proxy:
        scene = _Scene(
            emulator,
            pg_dsn,
            table_name,
            [],
            endpoint=proxy.url,
            extra={"SQS_WAIT_TIME_SECONDS": "20"},
        )
        worker = scene.start(tmp_path / "worker.log")
        receivers = int(scene.env["SLUICE_RECEIVE_CONCURRENCY"])
        wait_for(
            lambda: proxy.in_flight("ReceiveMessage") == receivers,
            10,
            "every receiver to be in a long poll",
        )
        code, elapsed = _stop(worker, timeout=scene.grace + 10)
        polls = proxy.calls("ReceiveMessage")
    assert code == 0, worker.log[-3000:]
    assert elapsed < scene.grace, elapsed
    assert polls == receivers  # each poll was cut short, not waited out or repeated
    assert has_event(worker.log, "stopped")


@pytest.mark.parametrize("missing", ["queue", "warehouse"])
def test_sigterm_while_waiting_at_start_up_exits_within_grace(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, missing: str
) -> None:
    """A worker started before SQS or its warehouse is up retries with backoff; SIGTERM
    meanwhile must still stop it within the grace (it holds no messages yet)."""
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint="http://127.0.0.1:1" if missing == "queue" else emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=(
            "postgresql://sluice:s3cretPW@127.0.0.1:1/nowhere" if missing == "warehouse" else pg_dsn
        ),
    )
    worker = start_worker(env, tmp_path / "worker.log")
    wait_for(
        lambda: (
            has_event(worker.log, f"{missing}_unavailable") or worker.process.poll() is not None
        ),
        30,
        f"a failed attempt to reach the {missing}",
    )
    assert worker.process.poll() is None, worker.log[-3000:]
    grace = float(env["SLUICE_SHUTDOWN_GRACE"])
    try:
        code, elapsed = _stop(worker, timeout=grace + MARGIN)
    finally:
        worker.kill()
    assert "s3cretPW" not in worker.log
    assert code == 0, worker.log[-3000:]
    assert elapsed < grace + MARGIN
