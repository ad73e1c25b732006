"""End to end through real processes: emulator -> worker -> PostgreSQL / DuckDB."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import psycopg
import pytest

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.worker import init_db, start_worker, worker_env


def _pg_counts(dsn: str, table: str) -> Counter[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT dedupe_key, count(*) FROM "{table}" GROUP BY 1').fetchall()
    return Counter({str(k): int(n) for k, n in rows})


@pytest.mark.parametrize(
    ("sink", "client"),
    [("postgres", "wire"), ("duckdb", "wire"), ("postgres", "botocore")],
)
def test_every_valid_message_loaded_once_and_malformed_dead_lettered(
    emulator: Emulator,
    pg_dsn: str,
    table_name: str,
    duckdb_path: str,
    tmp_path: Path,
    sink: str,
    client: str,
) -> None:
    plan = list(synthetic_stream(3000, malformed_ratio=0.03, duplicate_ratio=0.05, seed=11))
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        sink=sink,
        database_url=pg_dsn,
        duckdb_path=duckdb_path,
    )
    init_db(env)

    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]

    mapping = load_mapping(None, table_name)
    import orjson

    expected_keys = {mapping.dedupe_key(orjson.loads(m.body), m.body) for m in plan if m.valid}
    if sink == "postgres":
        counts = _pg_counts(pg_dsn, table_name)
    else:
        with duckdb.connect(duckdb_path, read_only=True) as con:
            rows = con.execute(f'SELECT dedupe_key, count(*) FROM "{table_name}" GROUP BY 1')
            counts = Counter({str(k): int(n) for k, n in rows.fetchall()})
    assert set(counts) == expected_keys
    assert max(counts.values()) == 1
    expected_reasons = Counter(m.expected_reason.value for m in plan if m.expected_reason)
    assert sqs.dlq_reasons(emulator.endpoint, queues.dlq_url) == expected_reasons
    assert sqs.depth(emulator.endpoint, queues.url).total == 0
    assert '"workerId"' in worker.log  # the final stats line
