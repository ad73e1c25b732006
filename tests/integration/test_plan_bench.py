"""`sluice plan` and `sluice bench` as real processes: figures, a scratch run, clean-up."""

from __future__ import annotations

import json

import psycopg

from sluice.local.emulator import Emulator
from tests.support import sqs
from tests.support.worker import duckdb_worker_env, run_sluice, worker_env


def test_plan_shows_the_guides_situation_and_measured_rates(emulator: Emulator) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    env = duckdb_worker_env(emulator.endpoint, queues.url, "unused.duckdb")
    done = run_sluice(
        "plan",
        "--backlog",
        "2,800,000",
        "--arrival",
        "600000/day",
        "--deadline",
        "14d",
        "--worker-rate",
        "guide",
        "--worker-rate",
        "guide-long-poll",
        "--worker-rate",
        "6000/s",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    plans = json.loads(done.stdout)
    by_rate = {p["inputs"]["worker_rate"]["per_second"]: p for p in plans}
    guide = {f["name"]: f["value"] for f in by_rate[2.0]["figures"]}
    assert guide["per worker per day"] == 172_800
    assert guide["backlog change/day with 1"] == "+427,200"
    assert by_rate[0.5]["workers_for_deadline"] == 19
    assert by_rate[6000.0]["recommended"] == 1
    assert by_rate[6000.0]["drain"][0]["verdict"] == "clears"
    table = run_sluice(
        "plan",
        "--backlog",
        "1000",
        "--arrival",
        "1/s",
        "--worker-rate",
        "10/s",
        env=env | {"COLUMNS": "160"},
    )
    assert table.returncode == 0, table.stderr
    assert "workers to keep up" in table.stdout and "arithmetic" in table.stdout
    bad = run_sluice("plan", "--deadline", "soon", "--worker-rate", "1/s", env=env)
    assert bad.returncode == 2 and "duration such as" in bad.stderr
    # --backlog queue reads the queue's own depth.
    sqs.send(emulator.endpoint, queues.url, (f'{{"n": {i}}}' for i in range(120)))
    from_queue = run_sluice(
        "plan",
        "--backlog",
        "queue",
        "--arrival",
        "1/s",
        "--worker-rate",
        "10/s",
        "--json",
        env=env,
    )
    assert from_queue.returncode == 0, from_queue.stderr
    assert json.loads(from_queue.stdout)[0]["inputs"]["backlog"] == 120


def test_bench_loads_every_message_once_and_leaves_nothing(emulator: Emulator, pg_dsn: str) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=None,
        table="t",
        database_url=pg_dsn,
    )
    done = run_sluice("bench", "--messages", "3000", "--configured", "--json", env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["exact"] is True
    assert result["rows"] == 3000 and result["left_in_queue"] == 0
    assert result["rate"] > 0 and result["peak_rss_mb"] > 10
    with psycopg.connect(pg_dsn) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sluice_bench_%'"
        ).fetchone()
    assert left == (0,)

    async def names(client: object) -> list[str]:
        answer = await client.list_queues(QueueNamePrefix="sluice-bench-")  # type: ignore[attr-defined]
        return list(answer.get("QueueUrls", []))

    assert sqs.with_client(emulator.endpoint, names) == []
