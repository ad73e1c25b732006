"""Data Locker benchmark: objects in the emulator's S3 -> one worker -> PostgreSQL.

Writes ``--objects`` objects of ``--rows`` rows each (AppsFlyer raw-data headers, 41
columns; gzip CSV, or Parquet with ``--format parquet`` in row groups of 50,000), sends one
S3 event notification per object, then runs one `sluice run --drain` worker with the
shipped Data Locker mapping and measures it from outside: rows per second
(wall time of the worker, start-up included), CPU microseconds per row, and the worker's peak
RSS (read from /proc while it runs). The RSS with objects of N rows against objects of
N/4 rows shows whether memory follows the object's size (it should not).

Usage: python bench/data_locker.py [--objects N] [--rows R] [--batch-rows B]
                                  [--format csv|parquet]
Needs PostgreSQL (SLUICE_TEST_DATABASE_URL, default postgresql://127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import s3, sqs  # noqa: E402
from tests.support.worker import init_db  # noqa: E402

from bench.common import emulator_worker_env  # noqa: E402
from sluice.local.emulator import running_emulator  # noqa: E402
from sluice.tools.benchmark import measure_child  # noqa: E402
from sluice.tools.data_locker import (  # noqa: E402
    folder,
    gzip_csv,
    notification,
    parquet,
    synth_rows,
)

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-rows", type=int, default=5_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = parser.parse_args()
    table = f"bench_dl_{uuid.uuid4().hex[:8]}"
    with running_emulator() as emulator:
        bucket = s3.make_bucket(emulator.endpoint)
        queues = sqs.make_queues(emulator.endpoint, visibility=60)
        compressed = 0
        bodies = []
        for index in range(args.objects):
            hour = datetime(2024, 5, 1, index % 24)
            rows = synth_rows(args.rows, seed=index, hour=hour)
            if args.format == "parquet":
                key = f"{folder('bench', 'inapps', hour)}part-{index:05}.snappy.parquet"
                body = parquet(rows)
            else:
                key = f"{folder('bench', 'inapps', hour)}part-{index:05}.csv.gz"
                body = gzip_csv(rows)
            compressed += len(body)
            etag = s3.put(emulator.endpoint, bucket, key, body)
            bodies.append(notification(bucket, key, size=len(body), etag=etag))
        sqs.send(emulator.endpoint, queues.url, bodies)
        env = emulator_worker_env(emulator.endpoint) | {
            "SQS_QUEUE_URL": queues.url,
            "SLUICE_DLQ_URL": queues.dlq_url,
            "SQS_WAIT_TIME_SECONDS": "1",
            "AWS_ENDPOINT_URL_S3": emulator.endpoint,
            "SLUICE_SINK": "postgres",
            "SLUICE_DATABASE_URL": DSN,
            "REDSHIFT_TABLE_NAME": table,
            "SLUICE_MAPPING_FILE": "appsflyer_data_locker",
            "SLUICE_BATCH_MAX_ROWS": str(args.batch_rows),
            "SLUICE_VISIBILITY_TIMEOUT": "60",
            "SLUICE_LOG_FORMAT": "json",
        }
        init_db(env)
        try:
            usage = measure_child([sys.executable, "-m", "sluice", "run", "--drain"], env)
            with psycopg.connect(DSN) as conn:
                found = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        finally:
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    rows = args.objects * args.rows
    loaded = int(found[0]) if found else 0
    print(
        f"data locker ({args.format}): {args.objects} objects x {args.rows:,} rows "
        f"({compressed / args.objects / 1e6:.1f} MB each), loads of {args.batch_rows:,} rows"
    )
    print(
        f"  {rows / usage.wall:,.0f} rows/s (worker wall {usage.wall:.1f} s, start-up "
        f"included), {usage.cpu / rows * 1e6:.1f} CPU us/row, peak RSS "
        f"{usage.peak_rss_kib / 1024:.0f} MiB, rows in table {loaded:,}, exit {usage.exit_code}"
    )


if __name__ == "__main__":
    main()
