"""`sluice init-db` on a table Sluice did not make: list what it lacks, add it with --apply.

The old consumer's table is made here as that consumer left it: a few of the mapping's
columns, none of Sluice's own (dedupe_key, message_id, sent_at, raw_event, loaded_at), an
id of its own and rows in it. Real PostgreSQL and real DuckDB, through the real CLI.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import psycopg

from sluice.mapping import SYSTEM_COLUMNS, TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.base import Sink
from sluice.sinks.duckdb import DuckDBSink
from sluice.sinks.postgres import PostgresSink
from sluice.tools.synth import synthetic_stream
from tests.support.worker import worker_env

OLD_CONSUMER_COLUMNS = (
    "id SERIAL PRIMARY KEY, appsflyer_id VARCHAR(128) NOT NULL, event_name VARCHAR(256),"
    " event_time TIMESTAMP, media_source VARCHAR(256), {revenue} created_at TIMESTAMP"
)
OLD_ROWS = (
    "INSERT INTO {table} (appsflyer_id, event_name, event_time, created_at) VALUES"
    " ('a-1', 'install', '2024-05-01 10:00:00', '2024-05-01 10:00:01'),"
    " ('a-2', 'af_purchase', '2024-05-01 11:00:00', '2024-05-01 11:00:01')"
)


def sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(table: str, **settings: str) -> dict[str, str]:
    return worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/000000000000/not-contacted",
        dlq_url=None,
        table=table,
        extra=settings,
    )


def _pg_columns(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _rows(mapping: TableMapping, count: int) -> list[MappedRow]:
    rows = []
    for index, synthetic in enumerate(
        synthetic_stream(count, malformed_ratio=0, duplicate_ratio=0)
    ):
        message = ReceivedMessage(f"m-{index}", f"r-{index}", synthetic.body, 1, 1_714_566_896_000)
        rows.append(mapping.map_event(orjson.loads(synthetic.body), synthetic.body, message))
    return rows


def _load_twice(sink: Sink, rows: list[MappedRow]) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        await sink.open()
        try:
            await sink.check_schema()
            first = await sink.load(rows)
            again = await sink.load(rows)
            return first.inserted, again.already_present
        finally:
            await sink.close()

    return asyncio.run(go())


def test_postgres_old_consumer_table_is_listed_then_adopted(pg_dsn: str, table_name: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table_name}" ({OLD_CONSUMER_COLUMNS.format(revenue="")})')
        conn.execute(OLD_ROWS.format(table=f'"{table_name}"'))
    before = _pg_columns(pg_dsn, table_name)
    env = _env(table_name, SLUICE_SINK="postgres", SLUICE_DATABASE_URL=pg_dsn)

    listed = sluice(env, "init-db")
    assert listed.returncode == 3, listed.stderr
    assert f"table {table_name} (postgres) differs from the mapping:" in listed.stdout
    assert "  to add: add column dedupe_key VARCHAR(64)\n" in listed.stdout
    assert f'    ALTER TABLE "{table_name}" ADD COLUMN "campaign" VARCHAR(512);' in listed.stdout
    assert "  to add: add a unique index on dedupe_key" in listed.stdout
    assert "loaded twice" in listed.stdout  # what old rows without a key mean
    assert "`sluice init-db --apply` makes these" in listed.stderr
    assert "creates the table" not in listed.stderr + listed.stdout  # no circular advice
    assert _pg_columns(pg_dsn, table_name) == before  # listing changes nothing

    applied = sluice(env, "init-db", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "now matches the mapping" in applied.stdout
    after = _pg_columns(pg_dsn, table_name)
    assert {k: after[k] for k in before} == before  # nothing dropped or retyped
    assert {c.name for c in SYSTEM_COLUMNS} | {"loaded_at", "campaign"} <= set(after)

    again = sluice(env, "init-db")
    assert again.returncode == 0, again.stderr
    assert "already exists and matches the mapping" in again.stdout

    mapping = load_mapping(None, table_name)
    rows = _rows(mapping, 30)
    assert _load_twice(PostgresSink(pg_dsn, mapping), rows) == (30, 30)
    with psycopg.connect(pg_dsn) as conn:
        old = conn.execute(
            f'SELECT count(*), count(dedupe_key), count(loaded_at) FROM "{table_name}"'
            " WHERE id <= 2"
        ).fetchone()
        total = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert old == (2, 0, 2)  # the old rows stay, keyless, stamped with the adoption time
    assert total == (32,)


def test_postgres_type_mismatch_is_one_line_and_nothing_changes(
    pg_dsn: str, table_name: str
) -> None:
    columns = OLD_CONSUMER_COLUMNS.format(revenue="event_revenue TEXT,")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table_name}" ({columns})')
    before = _pg_columns(pg_dsn, table_name)
    env = _env(table_name, SLUICE_SINK="postgres", SLUICE_DATABASE_URL=pg_dsn)
    done = sluice(env, "init-db", "--apply")
    assert done.returncode == 3, done.stderr
    assert (
        "  conflict: column event_revenue is text, the mapping wants decimal (DECIMAL(20,6)): "
        "change the mapping's type or migrate the column yourself (init-db never retypes)\n"
    ) in done.stdout
    assert "settle the conflicts above; nothing was changed" in done.stderr
    assert _pg_columns(pg_dsn, table_name) == before


def test_postgres_mapping_that_gains_a_column(pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    env = _env(table_name, SLUICE_SINK="postgres", SLUICE_DATABASE_URL=pg_dsn)
    assert sluice(env, "init-db").returncode == 0
    default = Path(sys.modules["sluice.mappings"].__file__ or "").parent / "appsflyer.toml"
    grown = tmp_path / "grown.toml"
    grown.write_text(
        default.read_text()
        + '\n[[columns]]\nname = "af_adset"\ntype = "text"\nnullable = false\nmax_length = 256\n'
    )
    env["SLUICE_MAPPING_FILE"] = str(grown)
    listed = sluice(env, "init-db")
    assert listed.returncode == 3, listed.stderr
    # the table is empty, so even a required column can be added NOT NULL
    assert "  to add: add column af_adset VARCHAR(256) NOT NULL\n" in listed.stdout
    applied = sluice(env, "init-db", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert _pg_columns(pg_dsn, table_name)["af_adset"] == "character varying"


def test_postgres_not_null_column_the_mapping_does_not_fill(pg_dsn: str, table_name: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table_name}" (appsflyer_id TEXT, source TEXT NOT NULL)')
    env = _env(table_name, SLUICE_SINK="postgres", SLUICE_DATABASE_URL=pg_dsn)
    done = sluice(env, "init-db", "--apply")
    assert done.returncode == 3, done.stderr
    assert "conflict: column source is NOT NULL with no default" in done.stdout


def test_duckdb_old_consumer_table_is_adopted(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    # an id the old writer filled itself: nullable, or Sluice's inserts could not fill it
    columns = OLD_CONSUMER_COLUMNS.format(revenue="").replace("SERIAL PRIMARY KEY", "INTEGER")
    with duckdb.connect(path) as con:
        con.execute(f"CREATE TABLE events ({columns})")
        con.execute(
            OLD_ROWS.format(table="events")
            .replace("(appsflyer_id,", "(id, appsflyer_id,")
            .replace("('a-1'", "(1, 'a-1'")
            .replace("('a-2'", "(2, 'a-2'")
        )
    env = _env("events", SLUICE_SINK="duckdb", SLUICE_DUCKDB_PATH=path)
    listed = sluice(env, "init-db")
    assert listed.returncode == 3, listed.stderr
    assert "  to add: add a unique index on dedupe_key" in listed.stdout
    assert "  to add: add column dedupe_key VARCHAR\n" in listed.stdout  # rows: nullable
    applied = sluice(env, "init-db", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    mapping = load_mapping(None, "events")
    assert _load_twice(DuckDBSink(path, mapping), _rows(mapping, 20)) == (20, 20)
    with duckdb.connect(path) as con:
        counted = con.execute(
            "SELECT count(*), count(dedupe_key), count(loaded_at) FROM events"
        ).fetchone()
    assert counted == (22, 20, 22)
