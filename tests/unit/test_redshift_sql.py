"""Golden tests: the exact statements the Redshift sink issues, and its literal escaping."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sluice.convert import ColumnType
from sluice.mapping import Column, TableMapping, load_mapping
from sluice.model import MappedRow, ReceivedMessage
from sluice.sinks.base import RowsRejectedError
from sluice.sinks.redshift.errors import SerializationConflict, classify_message
from sluice.sinks.redshift.sql import (
    MAX_BATCH_STATEMENTS,
    Isolation,
    MergeLock,
    copy_transaction,
    insert_statements,
    insert_transactions,
    isolation_of,
    literal,
    merge_sql,
    staging_table_sql,
    string_literal,
)
from sluice.sinks.sql import POSTGRES, REDSHIFT, create_table_sql

GOLDEN = Path(__file__).parent / "golden"
SMALL = TableMapping(
    "analytics.events",
    (
        Column("event_time", ColumnType.TIMESTAMP, ("event_time",), nullable=False),
        Column("note", ColumnType.TEXT, ("note",), max_length=32),
    ),
)
ROLE = "arn:aws:iam::123456789012:role/sluice-copy"
MANIFEST = "s3://bucket/staging/w1/2026/11/28/abc/manifest.json"


def row(key: str, note: object = "hi", message_id: str = "m1") -> MappedRow:
    message = ReceivedMessage(message_id, "rh", "{}", 1, 0)
    values = (datetime(2024, 5, 1, 12, 34, 56, 789000), note, key, message_id, None, '{"a":1}')
    return MappedRow(message, key, values)


def test_redshift_ddl_of_the_appsflyer_mapping_is_the_golden_file() -> None:
    mapping = load_mapping(None, "appsflyer_events")
    expected = (GOLDEN / "redshift_appsflyer_ddl.sql").read_text()
    assert create_table_sql(REDSHIFT, mapping) + ";\n" == expected


def test_copy_transaction_is_exactly_these_four_statements() -> None:
    plan = copy_transaction(REDSHIFT, SMALL, MANIFEST, ROLE, rows=3)
    cols = '"event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event"'
    assert plan.statements == (
        'CREATE TEMP TABLE "sluice_staging" (\n'
        '  "event_time" TIMESTAMP,\n  "note" VARCHAR(32),\n  "dedupe_key" VARCHAR(64),\n'
        '  "message_id" VARCHAR(128),\n  "sent_at" TIMESTAMP,\n  "raw_event" SUPER\n)',
        f'COPY "sluice_staging" ({cols}) FROM '
        "'s3://bucket/staging/w1/2026/11/28/abc/manifest.json' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/sluice-copy' MANIFEST FORMAT AS JSON "
        "'auto ignorecase' GZIP TIMEFORMAT 'auto' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF",
        f'INSERT INTO "analytics"."events" ({cols}) SELECT {cols} FROM (SELECT {cols}, '
        'ROW_NUMBER() OVER (PARTITION BY "dedupe_key" ORDER BY "message_id") AS "sluice_rank" '
        'FROM "sluice_staging") AS sluice_new WHERE sluice_new."sluice_rank" = 1 AND NOT EXISTS '
        '(SELECT 1 FROM "analytics"."events" AS sluice_old '
        'WHERE sluice_old."dedupe_key" = sluice_new."dedupe_key")',
        'DROP TABLE "sluice_staging"',
    )
    assert plan.merge_index == 2
    assert plan.rows == 3
    assert not any("TRUNCATE" in s.upper() for s in plan.statements)


def golden(plan_statements: tuple[str, ...]) -> str:
    return ";\n\n".join(plan_statements) + ";\n"


@pytest.mark.parametrize("lock", list(MergeLock))
def test_copy_transaction_of_each_merge_lock_mode_is_its_golden_file(lock: MergeLock) -> None:
    plan = copy_transaction(REDSHIFT, SMALL, MANIFEST, ROLE, rows=3, lock=lock)
    expected = (GOLDEN / f"redshift_copy_merge_lock_{lock.value}.sql").read_text()
    assert golden(plan.statements) == expected
    assert plan.statements[plan.merge_index] == merge_sql(SMALL)
    locks = [i for i, s in enumerate(plan.statements) if s.startswith("LOCK")]
    # TRANSACTION: the LOCK comes before CREATE TEMP TABLE, which takes the snapshot.
    assert locks == ([0] if lock is MergeLock.TRANSACTION else [])


@pytest.mark.parametrize("lock", list(MergeLock))
def test_insert_transaction_of_each_merge_lock_mode_is_its_golden_file(lock: MergeLock) -> None:
    [plan] = insert_transactions(
        REDSHIFT, SMALL, [row("k1", "it's"), row("k2", None, "m2")], lock=lock
    )
    expected = (GOLDEN / f"redshift_insert_merge_lock_{lock.value}.sql").read_text()
    assert golden(plan.statements) == expected
    assert plan.statements[plan.merge_index] == merge_sql(SMALL)
    assert plan.rows == 2


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("dev", "Snapshot Isolation"), ("analytics", "Serializable")], Isolation.SERIALIZABLE),
        ([("analytics", "Snapshot Isolation")], Isolation.OTHER),
        ([("analytics   ", "serializable   ")], Isolation.SERIALIZABLE),  # CHAR padding
        ([("analytics", "read committed")], Isolation.OTHER),
        ([("dev", "Serializable")], Isolation.UNKNOWN),  # not this database
        ([], Isolation.UNKNOWN),
    ],
)
def test_the_isolation_level_of_this_database(
    rows: list[tuple[str, str]], expected: Isolation
) -> None:
    assert isolation_of("analytics", rows) is expected


@pytest.mark.parametrize(
    "text",
    [
        "ERROR: 1023 DETAIL: Serializable isolation violation on table - 1234, transactions "
        "forming the cycle are: 1, 2 (pid:3)",
        "ERROR:1023 DETAIL: Serializable isolation violation on table in Redshift",
        "could not serialize access due to read/write dependencies among transactions",
        "deadlock detected",
    ],
)
def test_serialization_conflicts_are_their_own_transient_kind(text: str) -> None:
    assert isinstance(classify_message(text, "Redshift"), SerializationConflict)


def test_merge_text_is_the_same_for_both_dialects() -> None:
    # merge_sql takes no dialect: the statement PostgreSQL runs in the tests is Redshift's.
    assert merge_sql(SMALL).startswith('INSERT INTO "analytics"."events"')
    assert "JSONB" in staging_table_sql(POSTGRES, SMALL)
    assert "SUPER" in staging_table_sql(REDSHIFT, SMALL)


def test_insert_statement_literals_per_dialect() -> None:
    [(redshift, n)] = list(insert_statements(REDSHIFT, SMALL, [row("k1", "it's")]))
    [(postgres, _)] = list(insert_statements(POSTGRES, SMALL, [row("k1", "it's")]))
    assert n == 1
    assert redshift.endswith(
        "VALUES (CAST('2024-05-01 12:34:56.789000' AS TIMESTAMP), 'it''s', 'k1', 'm1', NULL, "
        "JSON_PARSE('{\"a\":1}'))"
    )
    assert postgres.endswith(
        "VALUES (CAST('2024-05-01 12:34:56.789000' AS TIMESTAMP), E'it''s', E'k1', E'm1', NULL, "
        "E'{\"a\":1}')"
    )


@pytest.mark.parametrize(
    ("text", "redshift"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("\\'; DROP TABLE x; --", "'\\\\''; DROP TABLE x; --'"),
        ("'", "''''"),
        ("\\", "'\\\\'"),
        ("line\nbreak\ttab", "'line\nbreak\ttab'"),
        ("ünïcødé 😀", "'ünïcødé 😀'"),
        ("%s %(x)s $1 :p1", "'%s %(x)s $1 :p1'"),
    ],
)
def test_string_literal_escapes_hostile_text(text: str, redshift: str) -> None:
    assert string_literal(REDSHIFT, text) == redshift
    assert string_literal(POSTGRES, text) == "E" + redshift


@pytest.mark.parametrize("text", ["nul\x00byte", "lone \ud800 surrogate"])
def test_string_literal_refuses_what_no_warehouse_stores(text: str) -> None:
    with pytest.raises((ValueError, UnicodeEncodeError)):
        string_literal(REDSHIFT, text)


def test_literals_of_every_type() -> None:
    assert literal(REDSHIFT, ColumnType.BIGINT, 42) == "42"
    assert literal(REDSHIFT, ColumnType.BOOLEAN, True) == "TRUE"
    assert literal(REDSHIFT, ColumnType.DOUBLE, 0.1) == "0.1"
    assert literal(REDSHIFT, ColumnType.DECIMAL, Decimal("1E+3")) == "1000"
    assert literal(REDSHIFT, ColumnType.DECIMAL, Decimal("-12.500000")) == "-12.500000"
    assert literal(REDSHIFT, ColumnType.TEXT, None) == "NULL"
    with pytest.raises(TypeError):
        literal(REDSHIFT, ColumnType.DOUBLE, float("nan"))
    with pytest.raises(TypeError):
        literal(REDSHIFT, ColumnType.TEXT, object())


def test_insert_statements_stay_under_the_limit_and_keep_every_row() -> None:
    rows = [row(f"k{i:04}", "x" * 20) for i in range(500)]
    statements = list(insert_statements(REDSHIFT, SMALL, rows, max_bytes=4_000))
    assert all(len(text.encode()) <= 4_000 for text, _ in statements)
    assert sum(n for _, n in statements) == 500
    assert len(statements) > 1


def test_a_row_over_the_limit_alone_is_rejected_so_the_batch_is_split() -> None:
    with pytest.raises(RowsRejectedError, match="statement limit"):
        list(insert_statements(REDSHIFT, SMALL, [row("k", "y" * 5000)], max_bytes=1000))


def test_insert_transactions_hold_at_most_40_statements_each() -> None:
    rows = [row(f"k{i:05}", "z" * 20) for i in range(3000)]
    plan = insert_transactions(REDSHIFT, SMALL, rows, max_bytes=2_000)
    locked = insert_transactions(REDSHIFT, SMALL, rows, max_bytes=2_000, lock=MergeLock.TRANSACTION)
    assert all(len(t.statements) <= MAX_BATCH_STATEMENTS for t in locked)
    assert all(t.statements[0] == 'LOCK "analytics"."events"' for t in locked)
    assert len(plan) > 1
    for transaction in plan:
        assert len(transaction.statements) <= MAX_BATCH_STATEMENTS
        assert transaction.statements[0].startswith("CREATE TEMP TABLE")
        assert not any(s.startswith("LOCK") for s in transaction.statements)
        assert transaction.statements[transaction.merge_index] == merge_sql(SMALL)
        assert transaction.statements[-1] == 'DROP TABLE "sluice_staging"'
    assert sum(t.rows for t in plan) == 3000
