"""Soak: many messages through two worker processes while one is SIGKILLed again and again.

    python bench/soak.py [--messages 1000000] [--min-kill 20] [--max-kill 60] [--seed 1]

Starts the SQS emulator, a queue with a DLQ, and two `sluice run` workers into PostgreSQL.
Worker A runs throughout; worker B is SIGKILLed at a random moment every 20-60 s and started
again at once. Messages (1% malformed, 2% duplicated) are sent while the workers consume.
When the queue is empty the workers are stopped with SIGTERM and the total-queue checker
judges the run (lost, duplicated, unexpected, misrouted, stuck must all be zero).

Prints throughput, kills, redeliveries and duplicates absorbed (from the workers' stats
lines: a killed incarnation contributes its last line, so these are lower bounds), and the
RSS of each worker sampled over time: worker A's must stay flat once warm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import emulator_worker_env  # noqa: E402
from sluice.local.emulator import EMULATOR_CREDENTIALS, running_emulator  # noqa: E402
from sluice.mapping import load_mapping  # noqa: E402
from sluice.sources.sqs import SqsQueue, sqs_client  # noqa: E402
from sluice.tools.checker import Sent, check, key_function  # noqa: E402
from sluice.tools.dlq import peek, release  # noqa: E402
from sluice.tools.sender import send_bodies  # noqa: E402
from sluice.tools.synth import synthetic_stream  # noqa: E402

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")


@dataclass
class Incarnation:
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class WorkerSlot:
    name: str
    env: dict[str, str]
    folder: Path
    incarnations: list[Incarnation] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)

    def start(self) -> None:
        log = self.folder / f"{self.name}-{len(self.incarnations)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "sluice", "run"],
                env=self.env | {"WORKER_ID": self.name},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.incarnations.append(Incarnation(process, log))

    @property
    def current(self) -> subprocess.Popen[bytes]:
        return self.incarnations[-1].process


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def last_stats(log: Path) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"stats"' in line:
            try:
                last = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
    return last


async def make_queues(endpoint: str, visibility: int) -> tuple[str, str]:
    async with sqs_client("us-east-1", endpoint, 4, EMULATOR_CREDENTIALS) as client:
        name = f"soak-{uuid.uuid4().hex[:6]}"
        dlq = (await client.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
        arn = (await client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        redrive = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "50"}).decode()
        url = (
            await client.create_queue(
                QueueName=name, Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive}
            )
        )["QueueUrl"]
        return str(url), str(dlq)


async def send_all(endpoint: str, url: str, bodies: Sequence[str]) -> None:
    async with sqs_client("us-east-1", endpoint, 16, EMULATOR_CREDENTIALS) as client:
        await send_bodies(client, url, bodies, concurrency=12)


async def depth(endpoint: str, url: str) -> int:
    async with sqs_client("us-east-1", endpoint, 2, EMULATOR_CREDENTIALS) as client:
        return (await SqsQueue(client, url).depth()).total


async def dlq_bodies(endpoint: str, url: str) -> list[str]:
    async with sqs_client("us-east-1", endpoint, 4, EMULATOR_CREDENTIALS) as client:
        views, _ = await peek(client, url, 1_000_000)
        await release(client, url, views)
        return [v.message.body for v in views]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--min-kill", type=float, default=20.0)
    parser.add_argument("--max-kill", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--visibility", type=int, default=30, help="SLUICE_VISIBILITY_TIMEOUT")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table = f"soak_{uuid.uuid4().hex[:8]}"

    print(f"generating {args.messages:,} messages ...", flush=True)
    plan = list(synthetic_stream(args.messages, seed=args.seed))
    folder = Path(os.environ.get("SOAK_LOGS", "/tmp")) / f"sluice-{table}"
    folder.mkdir(parents=True)
    with running_emulator() as emulator:
        url, dlq_url = asyncio.run(make_queues(emulator.endpoint, args.visibility))
        env = emulator_worker_env(emulator.endpoint) | {
            "SQS_QUEUE_URL": url,
            "SLUICE_DLQ_URL": dlq_url,
            "REDSHIFT_TABLE_NAME": table,
            "SLUICE_SINK": "postgres",
            "SLUICE_DATABASE_URL": DSN,
            "SLUICE_VISIBILITY_TIMEOUT": str(args.visibility),
            "SLUICE_STATS_INTERVAL": "2",
            "SLUICE_LOG_FORMAT": "json",
        }
        subprocess.run(
            [sys.executable, "-m", "sluice", "init-db"], env=env, check=True, capture_output=True
        )
        steady, victim = WorkerSlot("soak-a", env, folder), WorkerSlot("soak-b", env, folder)
        steady.start()
        victim.start()
        started = time.monotonic()
        sender = threading.Thread(
            target=lambda: asyncio.run(send_all(emulator.endpoint, url, [m.body for m in plan])),
            daemon=True,
        )
        sender.start()

        kills = 0
        next_kill = started + rng.uniform(args.min_kill, args.max_kill)
        drained_at: float | None = None
        while time.monotonic() - started < args.timeout:
            time.sleep(1.0)
            now = time.monotonic()
            for slot in (steady, victim):
                slot.rss_mb.append((now - started, rss_mb(slot.current.pid)))
            if now >= next_kill:
                victim.current.send_signal(signal.SIGKILL)
                victim.current.wait()
                kills += 1
                victim.start()
                next_kill = now + rng.uniform(args.min_kill, args.max_kill)
                print(f"[{now - started:6.0f} s] SIGKILL soak-b (kill {kills})", flush=True)
            if steady.current.poll() is not None:
                sys.exit(f"worker A died: see {steady.incarnations[-1].log}")
            if not sender.is_alive() and asyncio.run(depth(emulator.endpoint, url)) == 0:
                drained_at = now
                break
        for slot in (steady, victim):
            slot.current.send_signal(signal.SIGTERM)
        for slot in (steady, victim):
            slot.current.wait(timeout=60)

        still = asyncio.run(depth(emulator.endpoint, url))
        dead = asyncio.run(dlq_bodies(emulator.endpoint, dlq_url))
    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = dict(conn.execute(f'SELECT dedupe_key, count(*) FROM "{table}" GROUP BY 1'))
        conn.execute(f'DROP TABLE "{table}"')
    report = check(
        (Sent(m.body, m.valid) for m in plan),
        rows,
        set(dead),
        still,
        key_function(load_mapping(None, table)),
        min_messages=1000,
    )
    summarise(args, plan, steady, victim, kills, started, drained_at, report.summary())
    sys.exit(0 if report.ok else 1)


def summarise(
    args: argparse.Namespace,
    plan: Sequence[Any],
    steady: WorkerSlot,
    victim: WorkerSlot,
    kills: int,
    started: float,
    drained_at: float | None,
    verdict: str,
) -> None:
    stats = [last_stats(i.log) for slot in (steady, victim) for i in slot.incarnations]
    received = sum(int(s.get("messagesReceived", 0)) for s in stats)
    duplicates = sum(int(s.get("duplicatesAbsorbed", 0)) for s in stats)
    wall = (drained_at or time.monotonic()) - started
    sent_duplicates = sum(1 for m in plan if m.duplicate_of is not None)
    print(
        f"messages sent: {len(plan):,} ({sent_duplicates:,} exact duplicates, "
        f"{sum(1 for m in plan if not m.valid):,} malformed)"
    )
    print(
        f"drained in {wall:,.0f} s: {len(plan) / wall:,.0f} msg/s overall, two workers, "
        f"{kills} SIGKILLs of worker B ({len(victim.incarnations)} incarnations)"
    )
    print(
        f"receives seen in stats lines: {received:,} -> at least "
        f"{max(0, received - len(plan)):,} redeliveries"
    )
    print(
        f"duplicates absorbed (stats lines, lower bound): {duplicates:,} "
        f"(sent as duplicates: {sent_duplicates:,})"
    )
    for slot in (steady, victim):
        samples = [mb for _, mb in slot.rss_mb if mb > 0]
        if not samples:
            continue
        quarters = [
            samples[min(len(samples) - 1, int(len(samples) * q))] for q in (0.25, 0.5, 0.75, 0.99)
        ]
        print(
            f"RSS {slot.name}: peak {max(samples):.0f} MB; at 25/50/75/99% of the run "
            + " / ".join(f"{q:.0f}" for q in quarters)
            + " MB"
        )
    print(f"checker: {verdict}")


if __name__ == "__main__":
    main()
