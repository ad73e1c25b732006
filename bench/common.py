"""What the benchmarks share: the environment of a worker pointed at the local emulator."""

from __future__ import annotations

import argparse
import os
import threading
from dataclasses import dataclass

from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.sources.sqs import sqs_client
from sluice.tools.benchmark import ChildUsage, DrainWatch, measure_child


def emulator_worker_env(endpoint: str) -> dict[str, str]:
    """This process's environment without Sluice/SQS settings, aimed at ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "SQS_"))}
    return env | {
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "PORT": "0",  # no HTTP endpoints for benchmark workers
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WorkerRun:
    """One measured `sluice run --drain` child, with the emulator's share of the machine."""

    messages: int
    usage: ChildUsage
    drain_seconds: float | None  # first message taken to queue empty, seen from outside
    emulator_cpu: float  # seconds the SQS emulator spent serving this run

    @property
    def sustained(self) -> float:
        return self.messages / (self.drain_seconds or self.usage.wall)

    @property
    def with_startup(self) -> float:
        return self.messages / self.usage.wall

    def cpu_us(self, seconds: float) -> float:
        return seconds / self.messages * 1e6

    def describe(self) -> str:
        return (
            f"{self.sustained:,.0f} msg/s sustained (first message taken to queue empty), "
            f"{self.with_startup:,.0f} msg/s with start-up and exit; worker "
            f"{self.cpu_us(self.usage.cpu):.1f} CPU us/msg, emulator "
            f"{self.cpu_us(self.emulator_cpu):.1f} CPU us/msg, exit {self.usage.exit_code}"
        )


def measure_worker(
    command: list[str], env: dict[str, str], emulator: Emulator, url: str, messages: int
) -> WorkerRun:
    """Run a draining worker child; time its drain from outside as `sluice bench` does."""
    before = process_cpu_seconds(emulator.pid)
    with DrainWatch(
        lambda: sqs_client("us-east-1", emulator.endpoint, 2, EMULATOR_CREDENTIALS),
        url,
        messages,
    ) as watch:
        usage = measure_child(command, env)
    return WorkerRun(messages, usage, watch.seconds, process_cpu_seconds(emulator.pid) - before)


class CpuSampler:
    """CPU seconds used by a changing set of processes (e.g. PostgreSQL backends) while the
    block runs, sampled every ``interval`` seconds: a process that lives shorter than that is
    missed, one that exits keeps its last sample."""

    def __init__(self, command_name: str, interval: float = 0.25) -> None:
        self.command_name, self.interval = command_name, interval
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pids(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/comm", encoding="utf-8") as comm:
                        if comm.read().strip() == self.command_name:
                            found.append(int(entry))
                except OSError:
                    continue
        return found

    def _sample(self) -> None:
        for pid in self._pids():
            seconds = process_cpu_seconds(pid)
            self._start.setdefault(pid, seconds)
            self._last[pid] = max(seconds, self._last.get(pid, 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - self._start[pid] for pid in self._last)


def add_emulator_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stock-emulator",
        action="store_true",
        help="run fauxqs as published, without src/sluice/local/fauxqs_inflight.mjs",
    )


def emulator_label(stock: bool) -> str:
    return "fauxqs as published" if stock else "fauxqs + in-flight index"
