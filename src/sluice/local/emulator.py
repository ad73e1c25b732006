"""Start and stop the fauxqs SQS emulator (npm package, pinned in package.json).

It speaks the real SQS JSON protocol over HTTP, so the same aiobotocore client that talks
to AWS talks to it; only the endpoint URL differs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sluice.errors import ConfigError

FAUXQS_CLI = Path("node_modules") / "fauxqs" / "dist" / "cli.js"
EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
INFLIGHT_INDEX = Path(__file__).with_name("fauxqs_inflight.mjs")


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    pid: int


def find_fauxqs(start: Path | None = None) -> Path:
    """fauxqs's CLI in the nearest node_modules above ``start`` or this package."""
    explicit = os.environ.get("SLUICE_FAUXQS_CLI")
    if explicit:
        return Path(explicit)
    roots = [start or Path.cwd(), Path(__file__).resolve()]
    for root in roots:
        for folder in (root, *root.parents):
            candidate = folder / FAUXQS_CLI
            if candidate.is_file():
                return candidate
    raise ConfigError(
        "the SQS emulator is not installed: run `npm ci` in the Sluice checkout "
        "(or `npm install fauxqs@1.9.2`), or set SLUICE_FAUXQS_CLI to its dist/cli.js"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(endpoint: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/health", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"SQS emulator at {endpoint} did not become healthy")
        time.sleep(0.05)


@contextmanager
def running_emulator(
    port: int | None = None, log_path: Path | None = None, *, index_in_flight: bool = True
) -> Iterator[Emulator]:
    """Run fauxqs on 127.0.0.1 for the duration of the block.

    ``index_in_flight`` preloads ``fauxqs_inflight.mjs``, which spares fauxqs a scan of every
    in-flight message on each receive (see that file); False runs fauxqs as published.
    """
    node = shutil.which("node")
    if node is None:
        raise ConfigError("Node.js is required for the local SQS emulator (`node` not found)")
    cli = find_fauxqs()
    port = port or free_port()
    env = os.environ | {
        "FAUXQS_PORT": str(port),
        "FAUXQS_LOGGER": "false",
        "FAUXQS_HOST": "localhost",
    }
    sink = log_path.open("ab") if log_path else subprocess.DEVNULL
    preload = ["--import", INFLIGHT_INDEX.as_uri()] if index_in_flight else []
    process = subprocess.Popen([node, *preload, str(cli)], env=env, stdout=sink, stderr=sink)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(endpoint)
        yield Emulator(endpoint, process.pid)
    finally:
        stop_process(process, timeout=5)
        if log_path and not isinstance(sink, int):
            sink.close()


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
