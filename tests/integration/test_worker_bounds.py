"""A real worker's bounds: memory by bytes while 1 MiB messages arrive and the warehouse is
blocked, the requests of an idle worker on short polls, and a SIGTERM that strands nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.integration.test_metrics import get
from tests.support import sqs
from tests.support.worker import init_db, start_worker, wait_for, worker_env

MIB = 1024 * 1024
# What a worker may reach with 48 MiB of bodies held and two 16 MiB loads blocked (the
# interpreter, drivers and the loads' encoded copies come on top); measured about 190 MB.
RSS_LIMIT_MB = 300


def metric(base: str, name: str, **labels: str) -> float:
    code, text = get(f"{base}/metrics")
    if code != 200:
        return 0.0  # not serving yet: callers wait on a condition
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def heavy(count: int) -> list[str]:
    """Valid events of nearly 1 MiB each (an unknown field carries the weight)."""
    out = []
    for i, message in enumerate(synthetic_stream(count, malformed_ratio=0, duplicate_ratio=0)):
        event = orjson.loads(message.body)
        event["padding"] = f"{i}-" + "x" * (MIB - 2_000)
        out.append(orjson.dumps(event).decode())
    return out


def test_rss_stays_bounded_while_1_mib_messages_arrive_and_loads_are_blocked(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint, visibility=120)
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={
            "PORT": str(port),
            "SLUICE_MAX_HELD_BYTES": "48MiB",
            "SLUICE_VISIBILITY_TIMEOUT": "60",
            "SLUICE_SHUTDOWN_GRACE": "10",
        },
    )
    init_db(env)
    bodies = heavy(150)  # 150 MB: three times the bound
    for start in range(0, len(bodies), 10):
        sqs.send(emulator.endpoint, queues.url, bodies[start : start + 10])
    base = f"http://127.0.0.1:{port}"
    blocker = psycopg.connect(pg_dsn)
    blocker.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: metric(base, "sluice_message_bytes_held") > 30 * MIB, 60, "messages held")
        process = psutil.Process(worker.process.pid)
        peak_rss = 0.0
        held_bytes: list[float] = []
        # An observation window, not a wait: receivers must stay paused at the bound while
        # 100 more messages wait in the queue.
        for _ in range(20):
            peak_rss = max(peak_rss, process.memory_info().rss / 1e6)
            held_bytes.append(metric(base, "sluice_message_bytes_held"))
            time.sleep(0.25)
        received = metric(base, "sluice_messages_total", outcome="received")
        assert max(held_bytes) <= 48 * MIB
        assert received < 60, f"{received} messages received: the byte bound did not hold"
        assert peak_rss < RSS_LIMIT_MB, f"peak RSS {peak_rss:.0f} MB"
        print(f"peak RSS {peak_rss:.0f} MB, held {max(held_bytes) / MIB:.1f} MiB")
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(
        lambda: metric(base, "sluice_messages_total", outcome="deleted") >= len(bodies),
        180,
        "every message loaded once the table is free",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.log[-3000:]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert rows == (len(bodies),)


def test_an_idle_worker_on_short_polls_backs_off(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"PORT": str(port), "SQS_WAIT_TIME_SECONDS": "0"},
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: metric(base, "sluice_receives_total", result="empty") > 0, 30, "polls")
        first = metric(base, "sluice_receives_total", result="empty")
        time.sleep(5)  # an observation window: what the idle worker asks of SQS in it
        later = metric(base, "sluice_receives_total", result="empty")
        # Unbounded short polls made about 1,270 a second here; backed off, 4 receivers make a
        # handful each over these seconds, then about one each per 10 s.
        assert later - first < 100, f"{later - first} empty receives"
        # Messages still arrive promptly: receivers backing off wake when one finds some.
        plan = list(synthetic_stream(200, malformed_ratio=0, duplicate_ratio=0, seed=3))
        sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
        wait_for(
            lambda: metric(base, "sluice_messages_total", outcome="deleted") >= 200,
            60,
            "the events loaded",
        )
    finally:
        worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert '"short_poll_backoff"' in worker.log


def test_sigterm_strands_no_message_of_polls_in_flight(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint, visibility=300)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"SLUICE_VISIBILITY_TIMEOUT": "300", "SLUICE_RECEIVE_CONCURRENCY": "8"},
    )
    init_db(env)
    plan = list(synthetic_stream(20_000, malformed_ratio=0, duplicate_ratio=0, seed=8))
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))

    def loaded() -> int:
        with psycopg.connect(pg_dsn) as conn:
            found = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
        return int(found[0]) if found else 0

    for attempt in range(3):  # each stop lands while polls are in flight
        worker = start_worker(env, tmp_path / f"worker-{attempt}.log")
        target = loaded() + 500
        wait_for(lambda t=target: loaded() > t, 60, "the worker loading")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.log[-3000:]
        depth = sqs.depth(emulator.endpoint, queues.url)
        assert depth.in_flight == 0, f"stop {attempt}: {depth.in_flight} messages stranded"
