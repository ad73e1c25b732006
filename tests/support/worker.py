"""Run `sluice` as a real child process and wait on it with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sluice.local.emulator import EMULATOR_CREDENTIALS


def worker_env(
    *,
    endpoint: str,
    queue_url: str,
    dlq_url: str | None,
    table: str,
    sink: str = "postgres",
    database_url: str | None = None,
    duckdb_path: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a worker tuned for tests: short visibility, quick flushes, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "SQS_", "AWS_"))}
    env |= {
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "SQS_QUEUE_URL": queue_url,
        "SQS_WAIT_TIME_SECONDS": "1",
        "REDSHIFT_TABLE_NAME": table,
        "SLUICE_SINK": sink,
        "SLUICE_LOG_FORMAT": "json",
        "SLUICE_VISIBILITY_TIMEOUT": "6",
        "SLUICE_BATCH_MAX_AGE": "0.3",
        "SLUICE_BATCH_MAX_ROWS": "200",
        "SLUICE_SHUTDOWN_GRACE": "5",
        "SLUICE_RECEIVE_CONCURRENCY": "4",
        "PORT": "0",  # no HTTP endpoints unless a test asks for them
    }
    if dlq_url:
        env["SLUICE_DLQ_URL"] = dlq_url
    if database_url:
        env["SLUICE_DATABASE_URL"] = database_url
    if duckdb_path:
        env["SLUICE_DUCKDB_PATH"] = duckdb_path
    return env | dict(extra or {})


def duckdb_worker_env(endpoint: str, queue_url: str, duckdb_path: str) -> dict[str, str]:
    """A worker environment for commands that need settings but load nothing (no DLQ)."""
    return worker_env(
        endpoint=endpoint,
        queue_url=queue_url,
        dlq_url=None,
        table="t",
        sink="duckdb",
        duckdb_path=duckdb_path,
    )


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"worker still running after {timeout}s; log:\n{self.log[-4000:]}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_worker(env: Mapping[str, str], log_path: Path, *args: str) -> Worker:
    handle = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice", "run", *args],
        env=dict(env),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return Worker(process, log_path)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def init_db(env: Mapping[str, str]) -> None:
    """`sluice init-db` with this environment; fails the test with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "init-db"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def run_sluice(
    *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One `sluice` command to its end, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
