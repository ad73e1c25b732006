"""Latency benchmark: one worker, default settings, behind a delay proxy for SQS and one for
PostgreSQL, each delayed case run right after the zero-delay case on the same machine.

For every case it starts its own `sluice run` (PostgreSQL sink, default settings) on a fresh
queue of ``--messages`` synthetic events, which a producer tops up while the worker runs (the
emulator slows with millions queued, so the queue stays under a few hundred thousand). After
``--warmup`` seconds it measures a ``--window`` of steady work and prints:

- the sustained rate: messages deleted in the window (the worker's /metrics) / its length;
- the worker's CPU microseconds per message (/proc/PID/stat) and peak RSS (VmHWM);
- SQS requests per message, counted at the SQS proxy, by action;
- the ratio of the rate to the zero-delay run just before it.

Delays are added by ``tests/support/tcp_proxy.py`` to every server->client chunk: one per SQS
round trip (an HTTP answer) and one per PostgreSQL round trip (BEGIN, COPY, merge, COMMIT).

Usage: python bench/latency.py [--delays 20,40] [--warehouse-ms 100] [--window 20]
       [--env NAME=VALUE ...]   (settings for the worker, e.g. to compare a fixed concurrency)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tcp_proxy import TcpFaultProxy  # noqa: E402

from bench.common import CpuSampler, emulator_worker_env, process_cpu_seconds  # noqa: E402
from sluice.local.emulator import (  # noqa: E402
    EMULATOR_CREDENTIALS,
    Emulator,
    free_port,
    running_emulator,
)
from sluice.sources.sqs import sqs_client  # noqa: E402
from sluice.tools.benchmark import peak_rss_kib  # noqa: E402
from sluice.tools.sender import send_bodies  # noqa: E402
from sluice.tools.synth import synthetic_stream  # noqa: E402

DSN = os.environ.get("SLUICE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")
TOP_UP_BELOW = 60_000  # visible messages under which the producer adds a chunk
TOP_UP_CHUNK = 30_000


class GaugeSampler:
    """Averages of the worker's gauges over the window, scraped every ``interval`` seconds:
    by Little's law, a stage's average count / the rate is the time a message spends in it."""

    NAMES = (
        "sluice_messages_held",
        "sluice_messages_settling",
        "sluice_receives_in_flight",
        "sluice_deletes_in_flight",
        "sluice_receive_concurrency",
    )

    def __init__(self, port: int, interval: float = 0.25) -> None:
        self.port, self.interval = port, interval
        self.sums: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GaugeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            text = scrape(self.port)
            if text is None:
                continue
            self.samples += 1
            for name in self.NAMES:
                value = metric(text, name + "{")
                if value is not None:
                    self.sums[name] += value

    def mean(self, name: str) -> float | None:
        if not self.samples or name not in self.sums:
            return None
        return self.sums[name] / self.samples


@dataclass(frozen=True)
class Sample:
    at: float
    deleted: float
    cpu: float
    requests: Counter[str]
    others: tuple[float, float]  # CPU seconds of the emulator, and of this process (the proxies)


@dataclass(frozen=True)
class CaseResult:
    sqs_ms: int
    warehouse_ms: int
    seconds: float
    messages: float
    cpu: float
    requests: Counter[str]
    peak_rss_mb: float
    topped_up: int
    concurrency: str
    gauges: dict[str, float]
    other_cpu: tuple[float, float, float]  # emulator, PostgreSQL, the proxies (this process)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def describe(self, zero: CaseResult | None) -> str:
        per = self.messages or 1
        total = sum(self.requests.values())
        actions = ", ".join(
            f"{name.removesuffix('Batch').removesuffix('Message')} {count / per:.3f}"
            for name, count in self.requests.most_common()
        )
        ratio = f"  ratio {self.rate / zero.rate:.2f}" if zero is not None else ""
        return (
            f"SQS +{self.sqs_ms:>2} ms, warehouse +{self.warehouse_ms:>3} ms: "
            f"{self.rate:7,.0f} msg/s{ratio}  {self.cpu / per * 1e6:6.1f} CPU us/msg  "
            f"peak RSS {self.peak_rss_mb:.0f} MB  SQS requests/msg {total / per:.3f} "
            f"({actions}); at the end: {self.concurrency}\n      {self.where_time_goes()}"
            f"\n      other CPU per message: emulator {self.other_cpu[0] / per * 1e6:.1f} us, "
            f"PostgreSQL {self.other_cpu[1] / per * 1e6:.1f} us, this process (the delay "
            f"proxies, the top-up producer) {self.other_cpu[2] / per * 1e6:.1f} us"
        )

    def where_time_goes(self) -> str:
        """Little's law on the window's averages: count in a stage / rate = time in it."""
        g, rate = self.gauges, self.rate or 1
        held = g.get("sluice_messages_held")
        if held is None:
            return "time per stage: not exposed"
        settling = g.get("sluice_messages_settling")
        parts = [f"a message is held {held / rate * 1000:.0f} ms (received to deleted)"]
        if settling is not None:
            parts.append(
                f"{(held - settling) / rate * 1000:.0f} ms of it before its commit, "
                f"{settling / rate * 1000:.0f} ms committed and waiting for its delete"
            )
        polls = g.get("sluice_receives_in_flight")
        if polls is not None:
            parts.append(
                f"receives in flight {polls:.1f} (of {g.get('sluice_receive_concurrency', 0):.1f}),"
                f" deletes in flight {g.get('sluice_deletes_in_flight', 0):.1f}"
            )
        return "; ".join(parts)


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def metric(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def deleted(port: int) -> float | None:
    text = scrape(port)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("sluice_messages_total{") and 'outcome="deleted"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def concurrency(port: int) -> str:
    """The worker's receive and delete concurrency now (its adaptive policy's counts)."""
    text = scrape(port) or ""
    receive = metric(text, "sluice_receive_concurrency{")
    delete = metric(text, "sluice_delete_concurrency{")
    if receive is None or delete is None:
        return "concurrency not exposed"
    return f"receive concurrency {receive:.0f}, delete {delete:.0f}"


class Producer:
    """Fills a fresh queue, then keeps it topped up from a thread of its own."""

    def __init__(self, endpoint: str, messages: int, seed: int) -> None:
        self.endpoint, self.messages, self.seed = endpoint, messages, seed
        self.url = ""
        self.topped_up = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def bodies(self, count: int) -> list[str]:
        self.seed += 1
        stream = synthetic_stream(count, malformed_ratio=0.0, duplicate_ratio=0.0, seed=self.seed)
        return [m.body for m in stream]

    async def fill(self) -> None:
        async with sqs_client("us-east-1", self.endpoint, 32, EMULATOR_CREDENTIALS) as client:
            answer = await client.create_queue(QueueName=f"latency-{uuid.uuid4().hex[:8]}")
            self.url = str(answer["QueueUrl"])
            await send_bodies(client, self.url, self.bodies(self.messages), concurrency=32)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        asyncio.run(self._top_up())

    async def _top_up(self) -> None:
        async with sqs_client("us-east-1", self.endpoint, 16, EMULATOR_CREDENTIALS) as client:
            while not self._stop.is_set():
                answer = await client.get_queue_attributes(
                    QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                if int(answer["Attributes"]["ApproximateNumberOfMessages"]) < TOP_UP_BELOW:
                    await send_bodies(client, self.url, self.bodies(TOP_UP_CHUNK), concurrency=16)
                    self.topped_up += TOP_UP_CHUNK
                await asyncio.sleep(0.5)

    async def delete_queue(self) -> None:
        async with sqs_client("us-east-1", self.endpoint, 2, EMULATOR_CREDENTIALS) as client:
            await client.delete_queue(QueueUrl=self.url)


def sample(pid: int, port: int, proxy: TcpFaultProxy, emulator_pid: int) -> Sample:
    count = deleted(port)
    return Sample(
        time.monotonic(),
        count or 0.0,
        process_cpu_seconds(pid),
        proxy.stats().sqs_requests,
        (process_cpu_seconds(emulator_pid), process_cpu_seconds(os.getpid())),
    )


def run_case(
    args: argparse.Namespace,
    emulator: Emulator,
    sqs_proxy: TcpFaultProxy,
    pg_proxy: TcpFaultProxy,
    sqs_ms: int,
    warehouse_ms: int,
) -> CaseResult:
    emulator_pid = emulator.pid
    producer = Producer(emulator.endpoint, args.messages, seed=sqs_ms * 1000 + warehouse_ms)
    asyncio.run(producer.fill())
    sqs_proxy.set_latency(sqs_ms / 1000, downstream_only=True)
    pg_proxy.set_latency(warehouse_ms / 1000, downstream_only=True)
    port = free_port()
    table = f"latency_{uuid.uuid4().hex[:8]}"
    env = emulator_worker_env(f"http://127.0.0.1:{sqs_proxy.port}") | {
        "SQS_QUEUE_URL": producer.url,
        "REDSHIFT_TABLE_NAME": table,
        "SLUICE_SINK": "postgres",
        "SLUICE_DATABASE_URL": f"postgresql://127.0.0.1:{pg_proxy.port}/test?sslmode=disable",
        "SLUICE_LOG_LEVEL": "warning",
        "PORT": str(port),
    }
    env |= dict(item.split("=", 1) for item in args.env)
    subprocess.run([sys.executable, "-m", "sluice", "init-db"], env=env, check=True)
    worker = subprocess.Popen([sys.executable, "-m", "sluice", "run"], env=env)
    producer.start()
    try:
        deadline = time.monotonic() + 60
        while deleted(port) is None:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the worker never served /metrics")
            time.sleep(0.2)
        time.sleep(args.warmup)
        with GaugeSampler(port) as gauges:
            first = sample(worker.pid, port, sqs_proxy, emulator_pid)
            with CpuSampler("postgres") as postgres:
                time.sleep(args.window)
            last = sample(worker.pid, port, sqs_proxy, emulator_pid)
        means = {name: gauges.mean(name) for name in GaugeSampler.NAMES}
        rss = peak_rss_kib(worker.pid) / 1024
        counts = concurrency(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        producer.stop()
        asyncio.run(producer.delete_queue())
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    return CaseResult(
        sqs_ms,
        warehouse_ms,
        last.at - first.at,
        last.deleted - first.deleted,
        last.cpu - first.cpu,
        last.requests - first.requests,
        rss,
        producer.topped_up,
        counts,
        {name: value for name, value in means.items() if value is not None},
        (
            last.others[0] - first.others[0],
            postgres.seconds,
            last.others[1] - first.others[1],
        ),
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=120_000, help="queued before each case")
    parser.add_argument("--delays", default="20,40", help="ms per SQS round trip, comma-separated")
    parser.add_argument("--warehouse-ms", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    delays = [int(d) for d in args.delays.split(",") if d.strip()]
    print(f"load average before: {load_average()}  cores: {os.cpu_count()}", flush=True)
    if args.env:
        print(f"worker settings: {' '.join(args.env)}")
    pg = psycopg.conninfo.conninfo_to_dict(DSN)
    with (
        running_emulator() as emulator,
        TcpFaultProxy(
            "127.0.0.1", int(emulator.endpoint.rsplit(":", 1)[1]), count_sqs=True
        ) as sqs_proxy,
        TcpFaultProxy(str(pg.get("host", "127.0.0.1")), int(pg.get("port", 5432))) as pg_proxy,
    ):
        for delay in delays:
            zero = run_case(args, emulator, sqs_proxy, pg_proxy, 0, 0)
            print(zero.describe(None), flush=True)
            slow = run_case(args, emulator, sqs_proxy, pg_proxy, delay, args.warehouse_ms)
            print(slow.describe(zero), flush=True)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
