"""What an idle worker asks of SQS: ReceiveMessage calls per hour on an empty queue.

Starts its own SQS emulator, an empty queue, and one `sluice run` worker into PostgreSQL for
each SQS_WAIT_TIME_SECONDS given; reads `sluice_receives_total` from the worker's /metrics at
the start and the end of a window, and prints the rate per hour beside what the same number of
long polls would cost (one request per poll per SQS_WAIT_TIME_SECONDS=20).

Usage: python bench/idle.py [--seconds 60] [--wait 0 --wait 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sluice.local.emulator import (  # noqa: E402
    EMULATOR_CREDENTIALS,
    free_port,
    running_emulator,
)
from sluice.sources.sqs import sqs_client  # noqa: E402

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")


def receives(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith("sluice_receives_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def make_queue(endpoint: str) -> str:
    async with sqs_client("us-east-1", endpoint, 2, EMULATOR_CREDENTIALS) as client:
        answer = await client.create_queue(QueueName=f"idle-{uuid.uuid4().hex[:8]}")
        return str(answer["QueueUrl"])


def measure(endpoint: str, wait: int, seconds: float, concurrency: int) -> float:
    url = asyncio.run(make_queue(endpoint))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "SQS_"))}
    env |= {
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "SQS_QUEUE_URL": url,
        "SQS_WAIT_TIME_SECONDS": str(wait),
        "SLUICE_SINK": "postgres",
        "SLUICE_DATABASE_URL": DSN,
        "SLUICE_RECEIVE_CONCURRENCY": str(concurrency),
        "REDSHIFT_TABLE_NAME": f"idle_{uuid.uuid4().hex[:8]}",
        "SLUICE_LOG_LEVEL": "warning",
        "PORT": str(port),
    }
    subprocess.run([sys.executable, "-m", "sluice", "init-db"], env=env, check=True)
    worker = subprocess.Popen([sys.executable, "-m", "sluice", "run"], env=env)
    try:
        deadline = time.monotonic() + 60
        while receives(port) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the worker never served /metrics")
            time.sleep(0.2)
        # Past the first polls of start-up: every receiver polls once (up to `wait` seconds)
        # before an empty queue leaves the scout alone polling.
        time.sleep(wait + 5.0)
        first, started = receives(port) or 0.0, time.monotonic()
        time.sleep(seconds)
        last, ended = receives(port) or 0.0, time.monotonic()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{env["REDSHIFT_TABLE_NAME"]}"')
    return (last - first) / (ended - started) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--wait", type=int, action="append")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    waits = args.wait or [0, 20]
    long_poll_cost = args.concurrency * 3600 / 20
    with running_emulator() as emulator:
        for wait in waits:
            per_hour = measure(emulator.endpoint, wait, args.seconds, args.concurrency)
            print(
                f"SQS_WAIT_TIME_SECONDS={wait:>2}, {args.concurrency} receivers, idle "
                f"{args.seconds:g} s: {per_hour:,.0f} ReceiveMessage/hour "
                f"({per_hour / long_poll_cost:.2f} x {long_poll_cost:,.0f}, what "
                f"{args.concurrency} long polls of 20 s cost)"
            )


if __name__ == "__main__":
    main()
