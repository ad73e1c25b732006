"""The scout: an idle worker keeps one long poll in flight, not all of them, and messages
that arrive wake every receiver. Counted at the fault proxy in front of the emulator."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.integration.test_worker_bounds import metric
from tests.support import sqs
from tests.support.fault_proxy import FaultProxy
from tests.support.worker import init_db, start_worker, wait_for, worker_env

RECEIVERS = 8
MESSAGES = 3_000


def rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(row[0]) if row else 0


def test_an_idle_worker_keeps_one_poll_in_flight_and_wakes_when_messages_come(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint, visibility=60)
    with FaultProxy(emulator.endpoint) as proxy:
        port = free_port()
        env = worker_env(
            endpoint=proxy.url,
            queue_url=queues.url,
            dlq_url=queues.dlq_url,
            table=table_name,
            database_url=pg_dsn,
            extra={
                "PORT": str(port),
                "SQS_WAIT_TIME_SECONDS": "5",
                "SLUICE_RECEIVE_CONCURRENCY": str(RECEIVERS),
                "SLUICE_VISIBILITY_TIMEOUT": "60",
            },
        )
        init_db(env)
        worker = start_worker(env, tmp_path / "worker.log")
        base = f"http://127.0.0.1:{port}"
        try:
            # At start every receiver polls; once one comes back empty, only the scout does.
            wait_for(
                lambda: proxy.calls("ReceiveMessage") >= RECEIVERS + 2,
                60,
                "the first polls to come back empty and the scout to poll again",
            )
            seen = []
            until = time.monotonic() + 6  # longer than one 5 s poll
            while time.monotonic() < until:
                seen.append(proxy.in_flight("ReceiveMessage"))
                time.sleep(0.02)
            assert max(seen) == 1, f"idle, polls in flight: {sorted(set(seen))}"
            assert seen.count(1) > 0.9 * len(seen)  # one poll in flight nearly all the time
            assert metric(base, "sluice_receives_in_flight") == 1

            bodies = [
                m.body for m in synthetic_stream(MESSAGES, malformed_ratio=0, duplicate_ratio=0)
            ]
            sqs.send(emulator.endpoint, queues.url, bodies)
            busiest = 0

            def drained() -> bool:
                nonlocal busiest
                busiest = max(busiest, proxy.in_flight("ReceiveMessage"))
                assert worker.process.poll() is None, worker.log[-3000:]
                return rows(pg_dsn, table_name) >= MESSAGES

            wait_for(drained, 120, "the messages to be loaded", step=0.01)
            assert busiest > 1, "messages came but no other receiver woke"
            wait_for(lambda: sqs.depth(emulator.endpoint, queues.url).total == 0, 30, "deletes")
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.log[-3000:]
        finally:
            worker.kill()
    assert rows(pg_dsn, table_name) == MESSAGES
