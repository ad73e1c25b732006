"""The statements the Redshift sink issues, as text. Pure functions; golden-tested.

What differs from PostgreSQL is either data in ``sql.REDSHIFT`` (type names, the clock, how
JSON text becomes ``SUPER``, string-literal syntax, distribution and sort keys, whether keys
are enforced) or the one Redshift-only statement here, ``copy_from_s3_sql``. Everything else
(the staging DDL, ``LOCK``, the merge, the multi-row ``INSERT`` of the insert path and its
literals) is the same text for both dialects, and the tests execute it on PostgreSQL.

Why ``INSERT ... WHERE NOT EXISTS`` and not ``MERGE``: Redshift does not enforce unique keys
and its ``MERGE`` must update matched rows (a rewrite of every duplicate, for nothing).

Racing merges (docs/redshift.md, "Concurrent loads and readers"): with ``MergeLock.NONE``
nothing is locked explicitly; under SERIALIZABLE isolation Redshift aborts the loser with
error 1023 and the sink runs the whole transaction again. Under SNAPSHOT isolation two
NOT EXISTS probes of the same key can both commit, so ``MergeLock.TRANSACTION`` LOCKs the
target as the first statement, before any statement takes the transaction's snapshot (a
LOCK placed later waits for the other merge but still reads the snapshot from before it).
Redshift commits implicitly on ``TRUNCATE``, so the load transaction never truncates: the
staging table is created and dropped inside it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sluice.convert import ColumnType
from sluice.mapping import DEDUPE_KEY, MESSAGE_ID, TableMapping
from sluice.model import MappedRow
from sluice.sinks.base import RowsRejectedError
from sluice.sinks.sql import REDSHIFT, Dialect, column_list, column_type, quote, quote_table

STAGING = "sluice_staging"
_RANK = "sluice_rank"
# The Data API refuses SQL text over 100 KB; leave room for a UTF-8 multi-byte boundary.
MAX_STATEMENT_BYTES = 100_000
MAX_BATCH_STATEMENTS = 40  # BatchExecuteStatement's limit
# SQL per BatchExecuteStatement request: its JSON body stays under 1 MiB, past which the
# HTTP client copies it in one piece on the event loop (aiohttp warns). JSON escaping of
# quotes makes the body larger than the SQL, hence the margin.
MAX_TRANSACTION_BYTES = 800_000
# Statements around the staged INSERTs of one transaction: LOCK, CREATE, merge, DROP.
_FIXED_STATEMENTS = 4


class MergeLock(enum.Enum):
    """How a load keeps racing merges from doubling a key."""

    NONE = "none"  # the database's SERIALIZABLE isolation; 1023 means run it again
    TRANSACTION = "transaction"  # LOCK the target first: readers wait for the whole load


class Isolation(enum.Enum):
    """The database's isolation level, as far as the sink could tell."""

    SERIALIZABLE = "serializable"
    OTHER = "other"  # Redshift's SNAPSHOT ISOLATION, PostgreSQL's read committed...
    UNKNOWN = "unknown"


# Rows of (database, isolation level). Redshift: STV_DB_ISOLATION_LEVEL ("Serializable" or
# "Snapshot Isolation"), matched to CURRENT_DATABASE in Python rather than in SQL, so no
# leader-node function meets a system table in one query. PostgreSQL (the test stand-in):
# the level a plain BEGIN gets.
ISOLATION_SQL = {
    "redshift": "SELECT db_name, isolation_level FROM stv_db_isolation_level",
    "postgres": "SELECT current_database(), current_setting('default_transaction_isolation')",
}
CURRENT_DATABASE_SQL = "SELECT current_database()"


def isolation_of(database: str, rows: Sequence[Sequence[object]]) -> Isolation:
    for row in rows:
        if len(row) >= 2 and str(row[0]).strip() == database:
            level = str(row[1]).strip().lower()
            if level == "serializable":
                return Isolation.SERIALIZABLE
            return Isolation.OTHER if level else Isolation.UNKNOWN
    return Isolation.UNKNOWN


@dataclass(frozen=True)
class Transaction:
    """Statements run as one transaction; ``merge_index`` is the one whose row count is
    the number of rows new to the target."""

    statements: tuple[str, ...]
    merge_index: int
    rows: int


def staging_table_sql(dialect: Dialect, mapping: TableMapping) -> str:
    lines = ",\n".join(f"  {quote(c.name)} {column_type(dialect, c)}" for c in mapping.load_columns)
    return f"CREATE TEMP TABLE {quote(STAGING)} (\n{lines}\n)"


def lock_sql(mapping: TableMapping) -> str:
    return f"LOCK {quote_table(mapping.table)}"


def merge_sql(mapping: TableMapping) -> str:
    """Staged rows whose key is new, one per key (the lowest message id wins a tie)."""
    cols = column_list(mapping)
    key = quote(DEDUPE_KEY)
    return (
        f"INSERT INTO {quote_table(mapping.table)} ({cols}) "
        f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
        f"(PARTITION BY {key} ORDER BY {quote(MESSAGE_ID)}) AS {quote(_RANK)} "
        f"FROM {quote(STAGING)}) AS sluice_new "
        f"WHERE sluice_new.{quote(_RANK)} = 1 AND NOT EXISTS "
        f"(SELECT 1 FROM {quote_table(mapping.table)} AS sluice_old "
        f"WHERE sluice_old.{key} = sluice_new.{key})"
    )


def drop_staging_sql() -> str:
    return f"DROP TABLE {quote(STAGING)}"


def copy_from_s3_sql(mapping: TableMapping, manifest_url: str, iam_role: str) -> str:
    """Redshift only: load gzip JSON lines named by a manifest into the staging table.

    ``auto ignorecase`` matches JSON keys to column names; JSON values land in SUPER columns
    as they are. ``MAXERROR 0``: one bad row fails the COPY, and the pipeline splits the
    batch to find it. No compression analysis or statistics for a table that lives for
    one transaction.
    """
    return (
        f"COPY {quote(STAGING)} ({column_list(mapping)}) "
        f"FROM {string_literal(REDSHIFT, manifest_url)} "
        f"IAM_ROLE {string_literal(REDSHIFT, iam_role)} "
        "MANIFEST FORMAT AS JSON 'auto ignorecase' GZIP TIMEFORMAT 'auto' "
        "MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF"
    )


def _locked(mapping: TableMapping, lock: MergeLock, statements: tuple[str, ...]) -> Transaction:
    """``statements`` (staging..., merge, DROP) with the LOCK the mode asks for in front."""
    if lock is MergeLock.TRANSACTION:
        statements = (lock_sql(mapping), *statements)
    return Transaction(statements, len(statements) - 2, 0)


def copy_transaction(
    dialect: Dialect,
    mapping: TableMapping,
    manifest_url: str,
    iam_role: str,
    rows: int,
    *,
    lock: MergeLock = MergeLock.NONE,
) -> Transaction:
    plan = _locked(
        mapping,
        lock,
        (
            staging_table_sql(dialect, mapping),
            copy_from_s3_sql(mapping, manifest_url, iam_role),
            merge_sql(mapping),
            drop_staging_sql(),
        ),
    )
    return Transaction(plan.statements, plan.merge_index, rows)


# ---- the insert path: values as literals, because BatchExecuteStatement takes no parameters


def string_literal(dialect: Dialect, text: str) -> str:
    """The one place values become SQL text. Audited; tested with hostile strings.

    Redshift reads backslash escapes in every string literal and PostgreSQL does inside
    ``E'...'``, so doubling backslashes and single quotes yields the same string in both.
    NUL cannot be stored by either and is refused (decode already dead-letters it).
    """
    if "\x00" in text:
        raise ValueError("a string literal cannot hold U+0000")
    if not text.isascii():  # isascii is a flag read; ASCII holds no surrogate
        text.encode("utf-8")  # raises on lone surrogates, which no warehouse can store
    escaped = text.replace("\\", "\\\\").replace("'", "''")
    return f"{dialect.escaped_string_prefix}'{escaped}'"


def literal(dialect: Dialect, kind: ColumnType, value: object) -> str:
    """One column value as SQL text; only values made by ``convert`` are accepted."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        text = string_literal(dialect, value)
        return dialect.json_from_text.format(text) if kind is ColumnType.JSON else text
    return _scalar_literal(kind, value)


def _scalar_literal(kind: ColumnType, value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))  # int() drops any subclass's own __str__
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, datetime):
        return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP)"
    raise TypeError(f"no SQL literal for a {type(value).__name__} in a {kind.value} column")


def row_literal(dialect: Dialect, kinds: Sequence[ColumnType], row: MappedRow) -> str:
    return (
        "("
        + ", ".join([literal(dialect, k, v) for k, v in zip(kinds, row.values, strict=True)])
        + ")"
    )


def insert_statements(
    dialect: Dialect,
    mapping: TableMapping,
    rows: Sequence[MappedRow],
    max_bytes: int = MAX_STATEMENT_BYTES,
) -> Iterator[tuple[str, int]]:
    """Multi-row INSERTs into staging, each under ``max_bytes``: (statement, rows in it)."""
    head = f"INSERT INTO {quote(STAGING)} ({column_list(mapping)}) VALUES "
    kinds = [c.type for c in mapping.load_columns]
    size = len(head.encode())
    parts: list[str] = []
    for row in rows:
        text = row_literal(dialect, kinds, row)
        cost = _utf8_length(text) + 2  # ", "
        if size + cost > max_bytes:
            if not parts:
                raise RowsRejectedError(
                    f"message {row.message.message_id}: the row is {cost} bytes as SQL, over "
                    f"the {max_bytes}-byte statement limit of the insert path (stage in S3)"
                )
            yield head + ", ".join(parts), len(parts)
            size, parts = len(head.encode()), []
        parts.append(text)
        size += cost
    if parts:
        yield head + ", ".join(parts), len(parts)


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def insert_transactions(
    dialect: Dialect,
    mapping: TableMapping,
    rows: Sequence[MappedRow],
    *,
    max_bytes: int = MAX_STATEMENT_BYTES,
    max_statements: int = MAX_BATCH_STATEMENTS,
    max_transaction_bytes: int = MAX_TRANSACTION_BYTES,
    lock: MergeLock = MergeLock.NONE,
) -> list[Transaction]:
    """The insert path's plan: as few transactions as the statement limits allow.

    Each transaction stages and merges its own share of the rows, so each commits
    complete; a retry after a partial failure re-merges what committed as no-ops.
    """
    plan = []
    for group in _groups(
        insert_statements(dialect, mapping, rows, max_bytes),
        max_statements - _FIXED_STATEMENTS,
        max_transaction_bytes,
    ):
        locked = _locked(
            mapping,
            lock,
            (
                staging_table_sql(dialect, mapping),
                *(text for text, _ in group),
                merge_sql(mapping),
                drop_staging_sql(),
            ),
        )
        plan.append(Transaction(locked.statements, locked.merge_index, sum(n for _, n in group)))
    return plan


def _groups(
    inserts: Iterator[tuple[str, int]], most: int, budget: int
) -> Iterator[list[tuple[str, int]]]:
    """Consecutive INSERTs, at most ``most`` and about ``budget`` bytes to a group."""
    group: list[tuple[str, int]] = []
    size = 0
    for insert in inserts:
        cost = _utf8_length(insert[0])
        if group and (len(group) == most or size + cost > budget):
            yield group
            group, size = [], 0
        group.append(insert)
        size += cost
    if group:
        yield group
