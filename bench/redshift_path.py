"""Redshift path benchmark: throughput behind a slow warehouse, and requests per million.

latency   One `sluice run --drain` worker process (SLUICE_SINK=redshift, direct connection,
          Redshift's flush defaults) drains a local SQS emulator into PostgreSQL reached
          through the test TCP fault proxy, which delays every server->client chunk by
          --latency-ms: each warehouse round trip costs that much more, standing for
          Redshift's per-statement and commit latency. The sink's statements are the
          production plan in PostgreSQL's dialect (bench/redshift_child.py); the target has
          no unique index, as in Redshift. --sink postgres runs the PostgreSQL sink (COPY)
          under the same latency and Redshift's flush settings, for comparison.
requests  The Redshift sink in this process, Data API runner and S3 stager, against moto
          server (tests/support/moto_redshift.py), loads batches of synthetic events by
          the copy path and the insert path; it counts the SQL statements, Data API calls
          and S3 requests made, and scales them to one million messages.

Usage: python bench/redshift_path.py latency [--messages N] [--latency-ms MS] [--repeat R]
                                           [--sink ...] [--stock-emulator] [--env K=V ...]
       python bench/redshift_path.py requests [--batches B]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.moto_server import running_moto_server  # noqa: E402
from tests.support.tcp_proxy import TcpFaultProxy  # noqa: E402

from bench.common import (  # noqa: E402
    CpuSampler,
    WorkerRun,
    add_emulator_flag,
    emulator_label,
    emulator_worker_env,
    measure_worker,
)
from bench.throughput import fill  # noqa: E402
from sluice.local.emulator import (  # noqa: E402
    EMULATOR_CREDENTIALS,
    Emulator,
    running_emulator,
)
from sluice.mapping import load_mapping  # noqa: E402
from sluice.model import ReceivedMessage  # noqa: E402
from sluice.sinks.redshift.settings import REDSHIFT_DEFAULTS  # noqa: E402
from sluice.sinks.sql import POSTGRES, create_table_sql  # noqa: E402
from sluice.tools.synth import synthetic_stream  # noqa: E402

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")


def latency(args: argparse.Namespace) -> None:
    """--repeat drains, each of a fresh queue into a fresh table; then the median."""
    info = psycopg.conninfo.conninfo_to_dict(DSN)
    print(
        f"messages: {args.messages:,}  sink: {args.sink}  latency per warehouse round trip: "
        f"{args.latency_ms} ms  receive concurrency: {args.concurrency}  cores: {os.cpu_count()}  "
        f"emulator: {emulator_label(args.stock_emulator)}"
        + (f"  settings: {' '.join(args.env)}" if args.env else "")
    )
    rates, exact = [], True
    with (
        running_emulator(index_in_flight=not args.stock_emulator) as emulator,
        TcpFaultProxy(str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))) as proxy,
    ):
        proxy.set_latency(args.latency_ms / 1000, downstream_only=True)
        for attempt in range(1, args.repeat + 1):
            run, warehouse_cpu, harness_cpu, rows, keys = _drain_once(
                args, emulator, proxy.port, seed=attempt
            )
            rates.append(run.sustained)
            exact = exact and rows == keys == args.messages and not run.usage.exit_code
            print(f"run {attempt}: {run.describe()}")
            print(
                f"  PostgreSQL standing in for Redshift: {run.cpu_us(warehouse_cpu):.1f} CPU "
                f"us/msg on this machine (Redshift's own work, not the worker's); latency "
                f"proxy and watchers {run.cpu_us(harness_cpu):.1f} CPU us/msg; worker peak "
                f"RSS {run.usage.peak_rss_kib / 1024:.0f} MB; rows loaded {rows:,} "
                f"({keys:,} distinct keys) of {args.messages:,}"
            )
        print(f"warehouse connections: {proxy.stats().accepted}")
    if args.repeat > 1:
        print(
            f"sustained over {args.repeat} runs: median {statistics.median(rates):,.0f} msg/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f})"
        )
    print("every run: every event loaded once, queue empty" if exact else "MISMATCH")
    if not exact:
        sys.exit(1)


def _drain_once(
    args: argparse.Namespace, emulator: Emulator, proxy_port: int, seed: int
) -> tuple[WorkerRun, float, float, int, int]:
    n = args.messages
    table = f"bench_rs_{uuid.uuid4().hex[:8]}"
    mapping = load_mapping(None, table)
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(create_table_sql(POSTGRES, mapping))  # type: ignore[arg-type]
        if args.sink == "redshift":  # Redshift enforces no key: only LOCK + NOT EXISTS
            conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_pkey"')  # type: ignore[arg-type]
    url = asyncio.run(fill(emulator.endpoint, n, seed=seed))
    dbname = psycopg.conninfo.conninfo_to_dict(DSN).get("dbname", "test")
    env = emulator_worker_env(emulator.endpoint) | {
        "SQS_QUEUE_URL": url,
        "REDSHIFT_TABLE_NAME": table,
        "SLUICE_RECEIVE_CONCURRENCY": str(args.concurrency),
        "SLUICE_LOG_LEVEL": "warning",
        "SLUICE_DATABASE_URL": f"postgresql://127.0.0.1:{proxy_port}/{dbname}?sslmode=disable",
    }
    if args.sink == "redshift":
        env |= {
            "SLUICE_SINK": "redshift",
            "SLUICE_REDSHIFT_CONNECTION": "direct",
            "SLUICE_REDSHIFT_LOAD_PATH": "insert",
        }
        command = [sys.executable, str(ROOT / "bench" / "redshift_child.py"), "run", "--drain"]
    else:
        env |= {"SLUICE_SINK": "postgres", "SLUICE_BATCH_MAX_AGE": "30"}
        env |= {f"SLUICE_{name.upper()}": str(value) for name, value in REDSHIFT_DEFAULTS.items()}
        command = [sys.executable, "-m", "sluice", "run", "--drain"]
    env |= dict(item.split("=", 1) for item in args.env)
    harness_before = time.process_time()  # this process: the proxy and the watchers
    with CpuSampler("postgres") as warehouse:
        run = measure_worker(command, env, emulator, url, n)
    harness = time.process_time() - harness_before
    with psycopg.connect(DSN, autocommit=True) as conn:
        row: Any = conn.execute(
            f'SELECT count(*), count(DISTINCT dedupe_key) FROM "{table}"'  # type: ignore[arg-type]
        ).fetchone()
        conn.execute(f'DROP TABLE "{table}"')  # type: ignore[arg-type]
    return run, warehouse.seconds, harness, int(row[0]), int(row[1])


def requests(args: argparse.Namespace) -> None:
    rows_per_batch = int(str(REDSHIFT_DEFAULTS["batch_max_rows"]))
    with running_moto_server() as endpoint:
        for path in ("copy", "insert"):
            counted = asyncio.run(_count(endpoint, path, args.batches, rows_per_batch))
            loaded = args.batches * rows_per_batch
            scale = 1_000_000 / loaded
            print(
                f"{path:6} path, {args.batches} loads of {rows_per_batch:,} rows: per million "
                f"messages {counted['statements'] * scale:,.0f} SQL statements in "
                f"{counted['transactions'] * scale:,.0f} transactions, "
                f"{counted['data_api'] * scale:,.0f} Data API calls "
                f"({counted['describes'] * scale:,.0f} of them DescribeStatement), "
                f"{counted['s3'] * scale:,.0f} S3 requests "
                f"({counted['s3_bytes'] / loaded:,.0f} gzip bytes staged per message)"
            )


async def _count(endpoint: str, path: str, batches: int, rows_per_batch: int) -> dict[str, int]:
    from sluice.sinks.redshift.build import AwsClients
    from sluice.sinks.redshift.data_api import DataApiRunner, DataApiTarget, PollPolicy
    from sluice.sinks.redshift.sink import RedshiftSink
    from sluice.sinks.redshift.staging import S3Stager, StagingLocation

    mapping = load_mapping(None, "appsflyer_events").with_text_limit(65535)
    clients = AwsClients("us-east-1", EMULATOR_CREDENTIALS, 8, 60)
    data = await clients.get("redshift-data", endpoint)
    s3 = await clients.get("s3", endpoint)
    calls = {"describe_statement": 0}
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    await s3.create_bucket(Bucket=bucket)

    class Counting:
        def __getattr__(self, name: str) -> Any:
            method = getattr(data, name)

            async def call(**kwargs: Any) -> Any:
                calls[name] = calls.get(name, 0) + 1
                return await method(**kwargs)

            return call

    async def data_client() -> Any:
        return Counting()

    async def s3_client() -> Any:
        return s3

    runner = DataApiRunner(
        data_client, DataApiTarget("dev", "c", "u"), PollPolicy(first=0.001, cap=0.001)
    )
    stager = (
        S3Stager(s3_client, StagingLocation(bucket, "stage"), "bench") if path == "copy" else None
    )
    role = "arn:aws:iam::123456789012:role/copy"
    sink = RedshiftSink(runner, mapping, stager=stager, iam_role=role if stager else None)
    for b in range(batches):
        stream = synthetic_stream(
            rows_per_batch, malformed_ratio=0, duplicate_ratio=0, seed=100 + b
        )
        rows = []
        for i, m in enumerate(stream):
            msg = ReceivedMessage(f"m{b}-{i}", "r", m.body, 1, 0)
            rows.append(mapping.map_event(orjson.loads(m.body), m.body, msg))
        await sink.load(rows)
    await clients.close()
    return {
        "statements": sink.statements,
        "transactions": calls.get("batch_execute_statement", 0),
        "data_api": runner.requests,
        "describes": calls["describe_statement"],
        "s3": stager.requests if stager else 0,
        "s3_bytes": stager.bytes_staged if stager else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--messages", type=int, default=200_000)
    lat.add_argument("--latency-ms", type=int, default=100)
    lat.add_argument("--repeat", type=int, default=1, help="drains to run; the median is printed")
    lat.add_argument("--concurrency", type=int, default=8)
    add_emulator_flag(lat)
    lat.add_argument("--sink", choices=["redshift", "postgres"], default="redshift")
    lat.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="worker setting"
    )
    req = sub.add_parser("requests")
    req.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    latency(args) if args.what == "latency" else requests(args)


if __name__ == "__main__":
    main()
