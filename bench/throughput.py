"""Throughput benchmark: one worker process, local SQS emulator -> PostgreSQL.

Prints, from one run:
- bare receive-and-delete rate of the same aiobotocore client against the same emulator,
  with no decoding and no sink (the ceiling the emulator and botocore allow);
- end-to-end rate of one `sluice run --drain` worker process into PostgreSQL;
- CPU microseconds per message for both, their ratio, and the worker's peak RSS.

Usage: python bench/throughput.py [--messages N] [--concurrency C] [--sink postgres|duckdb]
Both measured processes are children of this script; their CPU time and peak RSS come
from os.wait4, wall time from the first message to exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    add_emulator_flag,
    emulator_label,
    emulator_worker_env,
    measure_worker,
)
from sluice.local.emulator import EMULATOR_CREDENTIALS, running_emulator  # noqa: E402
from sluice.sources.sqs import SqsQueue, sqs_client  # noqa: E402
from sluice.tools.benchmark import measure_child  # noqa: E402
from sluice.tools.sender import send_bodies  # noqa: E402
from sluice.tools.synth import synthetic_stream  # noqa: E402

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")


async def fill(endpoint: str, messages: int, seed: int) -> str:
    bodies = [
        m.body
        for m in synthetic_stream(messages, malformed_ratio=0.0, duplicate_ratio=0.0, seed=seed)
    ]
    async with sqs_client("us-east-1", endpoint, 32, EMULATOR_CREDENTIALS) as client:
        url = (
            await client.create_queue(
                QueueName=f"bench-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "120"}
            )
        )["QueueUrl"]
        await send_bodies(client, url, bodies, concurrency=32)
    return str(url)


async def bare_drain(endpoint: str, url: str, concurrency: int) -> None:
    """Receive 10 at a time on `concurrency` long polls and delete each batch at once."""
    async with sqs_client("us-east-1", endpoint, concurrency + 4, EMULATOR_CREDENTIALS) as c:
        queue = SqsQueue(c, url)
        empty = 0

        async def loop() -> None:
            nonlocal empty
            while empty < concurrency * 2:
                got = await queue.receive(10, 1, 120)
                if not got:
                    empty += 1
                    continue
                empty = 0
                await queue.delete(got)

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """Run a child; return (wall s, CPU s, peak RSS KiB, exit code)."""
    usage = measure_child(args, env)
    return usage.wall, usage.cpu, usage.peak_rss_kib, usage.exit_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=8)
    add_emulator_flag(parser)
    parser.add_argument("--sink", choices=["postgres", "duckdb"], default="postgres")
    parser.add_argument(
        "--bare-child", nargs=2, metavar=("ENDPOINT", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_child:
        asyncio.run(bare_drain(args.bare_child[0], args.bare_child[1], args.concurrency))
        return

    n = args.messages
    table = f"bench_{uuid.uuid4().hex[:8]}"
    with (
        running_emulator(index_in_flight=not args.stock_emulator) as emulator,
        tempfile.TemporaryDirectory() as scratch,
    ):
        base_env = emulator_worker_env(emulator.endpoint)

        url = asyncio.run(fill(emulator.endpoint, n, seed=1))
        bare = run_child(
            [
                sys.executable,
                __file__,
                "--concurrency",
                str(args.concurrency),
                "--bare-child",
                emulator.endpoint,
                url,
            ],
            base_env,
        )

        url = asyncio.run(fill(emulator.endpoint, n, seed=2))
        env = base_env | {
            "SQS_QUEUE_URL": url,
            "REDSHIFT_TABLE_NAME": table,
            "SLUICE_SINK": args.sink,
            "SLUICE_DATABASE_URL": DSN,
            "SLUICE_DUCKDB_PATH": f"{scratch}/bench.duckdb",
            "SLUICE_RECEIVE_CONCURRENCY": str(args.concurrency),
            "SLUICE_LOG_LEVEL": "warning",
        }
        init = subprocess.run(
            [sys.executable, "-m", "sluice", "init-db"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            sys.exit(f"init-db failed: {init.stderr}")
        run = measure_worker(
            [sys.executable, "-m", "sluice", "run", "--drain"], env, emulator, url, n
        )
        e2e = (run.usage.wall, run.usage.cpu, run.usage.peak_rss_kib, run.usage.exit_code)
        loaded = count_rows(args.sink, table, f"{scratch}/bench.duckdb")
    report(n, args, bare, e2e, loaded)
    print(f"end-to-end, timed from outside: {run.describe()}")


def count_rows(sink: str, table: str, duck: str) -> int:
    if sink == "duckdb":
        import duckdb

        with duckdb.connect(duck, read_only=True) as con:
            row: Any = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0])
    with psycopg.connect(DSN, autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        conn.execute(f'DROP TABLE "{table}"')
    return int(row[0])


def report(
    n: int,
    args: argparse.Namespace,
    bare: tuple[float, float, int, int],
    e2e: tuple[float, float, int, int],
    loaded: int,
) -> None:
    bare_rate = n / bare[0]
    e2e_rate = n / e2e[0]
    print(
        f"messages: {n:,}  receive concurrency: {args.concurrency}  sink: {args.sink}  "
        f"emulator: {emulator_label(args.stock_emulator)}  "
        f"cores: {os.cpu_count()}"
    )
    print(
        f"bare receive+delete : {bare_rate:10,.0f} msg/s  {bare[1] / n * 1e6:6.1f} CPU us/msg"
        f"  (wall {bare[0]:.1f} s, exit {bare[3]})"
    )
    print(
        f"end-to-end worker   : {e2e_rate:10,.0f} msg/s  {e2e[1] / n * 1e6:6.1f} CPU us/msg"
        f"  (wall {e2e[0]:.1f} s incl. start-up and drain check, exit {e2e[3]})"
    )
    print(f"ratio end-to-end / bare: {e2e_rate / bare_rate:.2f}")
    print(f"worker peak RSS: {e2e[2] / 1024:.0f} MB")
    print(f"rows loaded: {loaded:,} of {n:,} {'OK' if loaded == n else 'MISMATCH'}")


if __name__ == "__main__":
    main()
