"""Shared fixtures: the SQS emulator, PostgreSQL, fresh tables. Missing services fail, not skip."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sluice.local.emulator import Emulator, running_emulator
from tests.support.moto_server import running_moto_server

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
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with contextlib.ExitStack() as stack:
        try:
            endpoint = stack.enter_context(running_moto_server(log))
        except RuntimeError as exc:  # it exited or never answered: fail, do not skip
            pytest.fail(str(exc))
        yield endpoint
