"""`sluice bench`: one worker's sustainable rate, measured on a scratch queue and table.

The worker is a real `sluice run --drain` child process with the configured settings, so the
figure includes decoding, mapping, the warehouse load and the deletes. It drains a scratch
queue filled with N distinct synthetic events into a scratch table, then the table is
counted (every event exactly once, the queue empty) and both are removed. CPU time comes from
``wait4``; peak RSS from the child's VmHWM, read while it runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sluice.config import Settings
from sluice.config_sink import SinkKind
from sluice.config_text import settings_environment
from sluice.errors import PermanentError, TransientError
from sluice.local.emulator import EMULATOR_CREDENTIALS, running_emulator
from sluice.mapping import load_mapping
from sluice.runtime.worker import build_sink
from sluice.sources.sqs import SqsQueue, call, sqs_client
from sluice.tools.sender import send_bodies
from sluice.tools.synth import synthetic_stream


@dataclass(frozen=True)
class ChildUsage:
    wall: float  # seconds from start to exit, start-up included
    cpu: float  # user + system seconds
    peak_rss_kib: int
    exit_code: int


@dataclass(frozen=True)
class BenchResult:
    messages: int
    rows: int
    left_in_queue: int
    usage: ChildUsage
    drain_seconds: float | None  # first message taken to queue empty, seen from outside
    sink: str
    endpoint: str

    @property
    def rate(self) -> float:
        """Sustained rate: messages over the drain itself, start-up and exit excluded."""
        return self.messages / (self.drain_seconds or self.usage.wall)

    @property
    def rate_with_startup(self) -> float:
        return self.messages / self.usage.wall

    @property
    def cpu_us_per_message(self) -> float:
        return self.usage.cpu / self.messages * 1e6

    @property
    def peak_rss_mb(self) -> float:
        return self.usage.peak_rss_kib / 1024

    @property
    def exact(self) -> bool:
        """Every event loaded once, nothing left behind, and the worker exited cleanly."""
        return self.rows == self.messages and self.left_in_queue == 0 and not self.usage.exit_code


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the peak RSS of the program now running in ``pid`` (0 once it has gone)."""
    try:
        with Path(f"/proc/{pid}/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_child(args: list[str], env: Mapping[str, str]) -> ChildUsage:
    """Run a child to its end and measure it.

    Peak RSS is read from /proc while the child runs: rusage's ru_maxrss would also count
    the pages of this parent that the child shared between fork and exec.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        args, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, peak_rss_kib(process.pid))
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildUsage(
        time.monotonic() - started,
        usage.ru_utime + usage.ru_stime,
        peak,
        process.returncode,
    )


@contextmanager
def _endpoint(settings: Settings, local: bool) -> Iterator[tuple[str | None, bool]]:
    """(endpoint, is_emulator): the configured SQS, or a local emulator for the run."""
    if local:
        with running_emulator() as emulator:
            yield emulator.endpoint, True
    else:
        yield settings.sqs_endpoint_url, settings.sqs_endpoint_url is not None


def run_benchmark(
    settings: Settings,
    messages: int,
    *,
    local: bool,
    credentials: dict[str, str] | None,
    seed: int = 1,
) -> BenchResult:
    scratch = f"sluice_bench_{uuid.uuid4().hex[:10]}"
    with _endpoint(settings, local) as (endpoint, emulated), tempfile.TemporaryDirectory() as tmp:
        creds = EMULATOR_CREDENTIALS if emulated and credentials is None else credentials
        bench = replace(
            settings,
            sqs_endpoint_url=endpoint,
            table_name=scratch,
            duckdb_path=str(Path(tmp) / "bench.duckdb"),
            # No warehouse chosen: a throwaway file in this temporary directory, not a guess.
            sink=settings.sink or SinkKind.DUCKDB,
            dlq_url=None,
            port=0,
            processes=1,
            autoscale=None,
            worker_id="bench",
            fault_point=None,
        )
        url = asyncio.run(_fill(bench, scratch, messages, seed, creds))
        try:
            asyncio.run(_create_table(bench))
            env = _child_env(bench, url, creds)
            with DrainWatch(lambda: _client(bench, creds), url, messages) as watch:
                usage = measure_child([sys.executable, "-m", "sluice", "run", "--drain"], env)
            rows = asyncio.run(_count_and_drop(bench))
            left = asyncio.run(_left(bench, url, creds))
        finally:
            asyncio.run(_delete_queue(bench, url, creds))
    return BenchResult(
        messages, rows, left, usage, watch.seconds, bench.sink_value, endpoint or "AWS"
    )


class DrainWatch:
    """Times the drain from outside: from the first message taken to the queue empty.

    Polls GetQueueAttributes every ``interval`` seconds in a thread of its own, so the figure
    leaves out the worker's interpreter start-up and its final emptiness check. The clock
    starts when fewer than all messages are visible (the first receive), not at the first
    delete: with large batches the first delete comes only after a whole batch has been
    received and loaded, and that work belongs to the drain.
    """

    def __init__(
        self,
        client: Callable[[], AbstractAsyncContextManager[Any]],
        url: str,
        messages: int,
        interval: float = 0.2,
    ) -> None:
        self.client, self.url, self.messages = client, url, messages
        self.interval = interval
        self.started: float | None = None
        self.finished: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)

    def __enter__(self) -> DrainWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None or self.finished <= self.started:
            return None
        return self.finished - self.started

    async def _watch(self) -> None:
        async with self.client() as client:
            queue = SqsQueue(client, self.url)
            while not self._stop.is_set() and self.finished is None:
                try:
                    depth = await queue.depth()
                except (TransientError, PermanentError):
                    depth = None
                now = time.monotonic()
                if depth is not None and depth.visible < self.messages and self.started is None:
                    self.started = now
                if depth is not None and depth.total == 0 and self.started is not None:
                    self.finished = now
                await asyncio.sleep(self.interval)


def _child_env(bench: Settings, url: str, creds: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "SQS_"))}
    env |= settings_environment(bench) | {"SQS_QUEUE_URL": url, "SLUICE_LOG_LEVEL": "warning"}
    env.pop("SLUICE_AUTOSCALE", None)
    if creds:
        env |= {
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        }
    return env


async def _fill(
    bench: Settings, name: str, messages: int, seed: int, creds: dict[str, str] | None
) -> str:
    bodies = [
        m.body
        for m in synthetic_stream(messages, malformed_ratio=0.0, duplicate_ratio=0.0, seed=seed)
    ]
    async with _client(bench, creds) as client:
        answer = await call(
            client.create_queue,
            "CreateQueue",
            QueueName=name.replace("_", "-"),
            Attributes={"VisibilityTimeout": str(bench.visibility_timeout)},
        )
        url = str(answer["QueueUrl"])
        await send_bodies(client, url, bodies, concurrency=32)
    return url


def _client(bench: Settings, creds: dict[str, str] | None) -> AbstractAsyncContextManager[Any]:
    return sqs_client(bench.aws_region, bench.sqs_endpoint_url, 32, creds, bench.sqs_client)


async def _create_table(bench: Settings) -> None:
    sink = build_sink(bench, load_mapping(bench.mapping_file, bench.table_name))
    try:
        await sink.open()
        await sink.create_table()
    finally:
        await sink.close()


async def _count_and_drop(bench: Settings) -> int:
    """Rows in the scratch table (each dedupe key is unique there), then drop it: through the
    sink, so every warehouse (the Data API too) is counted and cleaned up the same way."""
    sink = build_sink(bench, load_mapping(bench.mapping_file, bench.table_name))
    try:
        await sink.open()
        counted = await sink.count_rows()
        await sink.drop_table()
    finally:
        await sink.close()
    return counted


async def _left(bench: Settings, url: str, creds: dict[str, str] | None) -> int:
    async with _client(bench, creds) as client:
        return (await SqsQueue(client, url).depth()).total


async def _delete_queue(bench: Settings, url: str, creds: dict[str, str] | None) -> None:
    try:
        async with _client(bench, creds) as client:
            await call(client.delete_queue, "DeleteQueue", QueueUrl=url)
    except (TransientError, PermanentError):
        pass  # an emulator goes away with the run; a real scratch queue is named sluice-bench-*
