"""Adaptive concurrency against the emulator behind 40 ms per SQS round trip: a worker with
default concurrency settings grows its receives past where it started, and the drain ends
with every message loaded once."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.integration.test_worker_bounds import metric
from tests.support import sqs
from tests.support.tcp_proxy import TcpFaultProxy
from tests.support.worker import init_db, start_worker, worker_env

MESSAGES = 30_000
START = 8  # where the adaptive count starts (SLUICE_RECEIVE_CONCURRENCY's default)


def test_receive_concurrency_grows_behind_40_ms_and_the_drain_completes(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint, visibility=120)
    bodies = [m.body for m in synthetic_stream(MESSAGES, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, queues.url, bodies)
    upstream = int(emulator.endpoint.rsplit(":", 1)[1])
    with TcpFaultProxy("127.0.0.1", upstream, count_sqs=True) as proxy:
        proxy.set_latency(0.040, downstream_only=True)
        port = free_port()
        env = worker_env(
            endpoint=f"http://127.0.0.1:{proxy.port}",
            queue_url=queues.url,
            dlq_url=queues.dlq_url,
            table=table_name,
            database_url=pg_dsn,
            extra={
                "PORT": str(port),
                "SLUICE_VISIBILITY_TIMEOUT": "120",
                "SLUICE_BATCH_MAX_ROWS": "2000",
                "SLUICE_BATCH_MAX_AGE": "1",
            },
        )
        del env["SLUICE_RECEIVE_CONCURRENCY"]  # adaptive: the default
        init_db(env)
        worker = start_worker(env, tmp_path / "worker.log", "--drain")
        base = f"http://127.0.0.1:{port}"
        highest = 0.0
        deadline = time.monotonic() + 240
        try:
            while worker.process.poll() is None:
                assert time.monotonic() < deadline, f"no drain in 240 s:\n{worker.log[-3000:]}"
                highest = max(highest, metric(base, "sluice_receive_concurrency"))
                time.sleep(0.2)
        finally:
            worker.kill()
        requests = proxy.stats().sqs_requests
    assert worker.process.returncode == 0, worker.log[-3000:]
    assert highest > START, f"receive concurrency never grew past {START}: {highest}"
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            f'SELECT count(*), count(DISTINCT dedupe_key) FROM "{table_name}"'
        ).fetchone()
    assert row == (MESSAGES, MESSAGES)
    assert sqs.depth(emulator.endpoint, queues.url).total == 0
    per_message = sum(requests.values()) / MESSAGES
    print(
        f"\nbehind 40 ms: receive concurrency rose from {START} to {highest:.0f}; "
        f"{per_message:.3f} SQS requests per message ({dict(requests)})"
    )
