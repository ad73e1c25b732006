"""Start moto server (tests/support/moto_redshift.py: S3 + the Redshift Data API) as a child
process on a free port, wait until it answers, and stop it afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sluice.local.emulator import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_moto_server(log_path: Path | None = None, timeout: float = 30.0) -> Iterator[str]:
    """The server's URL for the duration of the block; RuntimeError (with its log) if it
    exits or does not answer within ``timeout`` seconds."""
    port = free_port()
    out = log_path.open("wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_redshift", str(port)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_answering(process, endpoint, timeout, log_path)
        yield endpoint
    finally:
        stop_process(process, timeout=10)
        if not isinstance(out, int):
            out.close()


def _wait_answering(
    process: subprocess.Popen[bytes], endpoint: str, timeout: float, log_path: Path | None
) -> None:
    def log() -> str:
        return log_path.read_text() if log_path else "(no log)"

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}: {log()}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto server did not answer within {timeout:g} s: {log()}")
        time.sleep(0.05)
