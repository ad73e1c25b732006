"""Adopting an existing table: what ``init-db`` would change, as text and statements. Pure.

A table made by someone else (the old consumer's, or Sluice's before the mapping gained a
column) is brought to the mapping only by adding: missing columns and, where the warehouse
enforces keys, the unique index on ``dedupe_key``. Nothing is ever dropped or retyped; a
column whose type differs is a conflict for a person to settle.

Rows already in the table get NULL in every added column, since no default can recreate
what the old writer never stored, so a column the mapping requires (NOT NULL) is added
nullable there, and said so. Sluice's own check accepts that: the worker writes a value
in every row it loads. ``dedupe_key`` is the case that matters: the old rows have none,
PostgreSQL's and DuckDB's unique indexes allow any number of NULLs, and Redshift's merge
compares keys with ``=``, so old rows never match a new one. A message the old consumer
loaded and Sluice receives again (an SQS redelivery around the cut-over) is loaded twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sluice.mapping import DEDUPE_KEY, LOADED_AT, Column, TableMapping
from sluice.sinks.sql import Dialect, column_type, quote, quote_table, split_table


@dataclass(frozen=True)
class TableShape:
    """What a sink read of an existing table."""

    columns: Mapping[str, tuple[str, bool]]  # name -> (reported type, nullable)
    has_rows: bool
    has_unique_key: bool  # a unique index on dedupe_key alone (ignored where not enforced)
    # NOT NULL columns with no default that the mapping does not fill: inserts would fail.
    unfilled: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    what: str  # one line for a person
    sql: str


@dataclass(frozen=True)
class SchemaPlan:
    table: str
    changes: tuple[Change, ...]
    conflicts: tuple[str, ...]  # only a person can settle these; nothing is applied then
    notes: tuple[str, ...]  # what the changes mean for the rows already there

    @property
    def matches(self) -> bool:
        return not self.changes and not self.conflicts


def add_column_sql(
    dialect: Dialect, table: str, column: str, type_sql: str, *, not_null: bool, default: str = ""
) -> str:
    """One column per statement: Redshift's ALTER TABLE adds no more than one at a time."""
    default_sql = f" DEFAULT {default}" if default else ""
    null_sql = " NOT NULL" if not_null else ""
    head = f"ALTER TABLE {quote_table(table)} ADD COLUMN {quote(column)}"
    return f"{head} {type_sql}{default_sql}{null_sql}"


def unique_index_sql(table: str) -> str:
    """PostgreSQL and DuckDB put the index in the table's schema; its name is unqualified."""
    _, name = split_table(table, "")
    index = f"{name}_{DEDUPE_KEY}"[:63]  # PostgreSQL's identifier limit
    return f"CREATE UNIQUE INDEX {quote(index)} ON {quote_table(table)} ({quote(DEDUPE_KEY)})"


def _add(dialect: Dialect, mapping: TableMapping, column: Column, shape: TableShape) -> Change:
    type_sql = column_type(dialect, column)
    not_null = not column.nullable and not shape.has_rows and dialect.adds_not_null_bare
    sql = add_column_sql(dialect, mapping.table, column.name, type_sql, not_null=not_null)
    return Change(f"add column {column.name} {type_sql}{' NOT NULL' if not_null else ''}", sql)


def _required_note(dialect: Dialect, column: Column, shape: TableShape) -> str | None:
    added_not_null = not shape.has_rows and dialect.adds_not_null_bare
    if column.nullable or column.name == DEDUPE_KEY or added_not_null:
        return None
    why = (
        "the table has rows and no default can supply their values"
        if shape.has_rows
        else f"{dialect.name} adds a NOT NULL column only with a default"
    )
    return (
        f"column {column.name} is required by the mapping but is added nullable ({why}): "
        "rows already there hold NULL, every row Sluice loads has a value"
    )


def _conflict(dialect: Dialect, column: Column, reported: str) -> str | None:
    if reported.upper() in dialect.reported_types[column.type]:
        return None
    return (
        f"column {column.name} is {reported.lower()}, the mapping wants {column.type.value} "
        f"({column_type(dialect, column)}): change the mapping's type or migrate the column "
        "yourself (init-db never retypes)"
    )


def plan_schema(dialect: Dialect, mapping: TableMapping, shape: TableShape) -> SchemaPlan:
    """The changes that bring an existing table to ``mapping``, only by adding."""
    changes: list[Change] = []
    conflicts: list[str] = []
    notes: list[str] = []
    for column in mapping.load_columns:
        if column.name in shape.columns:
            conflict = _conflict(dialect, column, shape.columns[column.name][0])
            conflicts.extend([conflict] if conflict else [])
            continue
        changes.append(_add(dialect, mapping, column, shape))
        note = _required_note(dialect, column, shape)
        notes.extend([note] if note else [])
        if column.name == DEDUPE_KEY and shape.has_rows:
            notes.append(
                f"rows already there get no {DEDUPE_KEY} (NULL) and are never matched: a "
                "message the old consumer loaded that SQS delivers again is loaded twice. "
                "Stop the old consumer, let it finish, then start Sluice"
            )
    if LOADED_AT not in shape.columns:
        # NOT NULL only on an empty table: DuckDB refuses it on one with rows even with a
        # default. The default fills every row either way, and the check asks for none.
        not_null = not shape.has_rows
        sql = add_column_sql(
            dialect,
            mapping.table,
            LOADED_AT,
            "TIMESTAMP",
            not_null=not_null,
            default=dialect.now_utc,
        )
        nn = " NOT NULL" if not_null else ""
        changes.append(Change(f"add column {LOADED_AT} TIMESTAMP{nn} DEFAULT now", sql))
        if shape.has_rows:
            notes.append(f"rows already there get the time of this change as {LOADED_AT}")
    if dialect.enforces_unique and not shape.has_unique_key:
        changes.append(
            Change(f"add a unique index on {DEDUPE_KEY}", unique_index_sql(mapping.table))
        )
        if shape.has_rows:
            notes.append("building the index blocks writes to the table, not reads, while it runs")
    for name in shape.unfilled:
        conflicts.append(
            f"column {name} is NOT NULL with no default and the mapping does not fill it: "
            "every insert would fail; give it a default or make it nullable yourself"
        )
    return SchemaPlan(mapping.table, tuple(changes), tuple(conflicts), tuple(notes))


def unfilled_columns(
    mapping: TableMapping, required_without_default: Iterable[str]
) -> tuple[str, ...]:
    """Of the table's NOT NULL columns without a default, those Sluice does not write."""
    filled = {c.name for c in mapping.load_columns} | {LOADED_AT}
    return tuple(sorted(n for n in required_without_default if n not in filled))
