"""Shared fixtures: the SQS emulator, PostgreSQL, fresh tables. Missing services fail, not skip."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sluice.local.emulator import Emulator, free_port, running_emulator

DEFAULT_TEST_DSN = "postgresql://127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    log = tmp_path_factory.mktemp("emulator") / "fauxqs.log"
    with running_emulator(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("SLUICE_TEST_DATABASE_URL", DEFAULT_TEST_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL for the tests is not reachable at {dsn}: {exc}. "
            "Run `make services` or set SLUICE_TEST_DATABASE_URL."
        )
    return dsn


@pytest.fixture
def table_name(pg_dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')


@pytest.fixture
def duckdb_path(tmp_path: Path) -> str:
    return str(tmp_path / "sluice.duckdb")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto server (S3 + Redshift Data API, see tests/support/moto_redshift.py): its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    root = Path(__file__).resolve().parents[1]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.moto_redshift", str(port)],
            cwd=root,
            env=os.environ | {"PYTHONPATH": os.pathsep.join([str(root), *sys.path])},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto server exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer within 30 s: {log.read_text()}")
            time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
