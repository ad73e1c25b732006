"""SQL shared by the sinks. Dialects differ only in what ``Dialect`` holds (data, not ifs).

Identifiers are validated when the mapping is built and always double-quoted here; values
never appear in SQL text: they are streamed by COPY, appended through Arrow, or bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sluice.convert import DECIMAL_PRECISION, DECIMAL_SCALE, ColumnType
from sluice.mapping import DEDUPE_KEY, LOADED_AT, SENT_AT, Column, TableMapping


@dataclass(frozen=True)
class Dialect:
    """What differs between warehouses: type names, the clock, how schema names types."""

    name: str
    type_names: Mapping[ColumnType, str]
    varchar: str  # with {n}
    now_utc: str
    # information_schema data_type spelling for each column type (upper-cased to compare)
    reported_types: Mapping[ColumnType, tuple[str, ...]]
    # How JSON text written as a literal becomes the JSON column type ({} is the literal).
    json_from_text: str = "{}"
    # Prefix that makes a string literal read backslash escapes (see redshift.sql.string_literal).
    escaped_string_prefix: str = "E"
    # Appended to CREATE TABLE: distribution and sort keys ({dist} and {sort} are quoted).
    table_options: str = ""
    # Whether the warehouse enforces PRIMARY KEY / UNIQUE (Redshift: informational only).
    enforces_unique: bool = True
    # Whether ALTER TABLE ... ADD COLUMN may say NOT NULL without a DEFAULT (on an empty
    # table). Redshift refuses it: its added NOT NULL columns need a default.
    adds_not_null_bare: bool = True


_DECIMAL = f"DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})"

POSTGRES = Dialect(
    name="postgres",
    type_names={
        ColumnType.TEXT: "TEXT",
        ColumnType.BIGINT: "BIGINT",
        ColumnType.DOUBLE: "DOUBLE PRECISION",
        ColumnType.DECIMAL: _DECIMAL,
        ColumnType.BOOLEAN: "BOOLEAN",
        ColumnType.TIMESTAMP: "TIMESTAMP",
        ColumnType.JSON: "JSONB",
    },
    varchar="VARCHAR({n})",
    now_utc="(now() AT TIME ZONE 'utc')",
    reported_types={
        ColumnType.TEXT: ("TEXT", "CHARACTER VARYING"),
        ColumnType.BIGINT: ("BIGINT",),
        ColumnType.DOUBLE: ("DOUBLE PRECISION",),
        ColumnType.DECIMAL: ("NUMERIC",),
        ColumnType.BOOLEAN: ("BOOLEAN",),
        ColumnType.TIMESTAMP: ("TIMESTAMP WITHOUT TIME ZONE",),
        ColumnType.JSON: ("JSONB", "JSON"),
    },
)

DUCKDB = Dialect(
    name="duckdb",
    type_names={
        ColumnType.TEXT: "VARCHAR",
        ColumnType.BIGINT: "BIGINT",
        ColumnType.DOUBLE: "DOUBLE",
        ColumnType.DECIMAL: _DECIMAL,
        ColumnType.BOOLEAN: "BOOLEAN",
        ColumnType.TIMESTAMP: "TIMESTAMP",
        ColumnType.JSON: "JSON",
    },
    varchar="VARCHAR",  # DuckDB ignores lengths; Sluice checks them before the load
    now_utc="(now() AT TIME ZONE 'UTC')",
    reported_types={
        ColumnType.TEXT: ("VARCHAR",),
        ColumnType.BIGINT: ("BIGINT",),
        ColumnType.DOUBLE: ("DOUBLE",),
        ColumnType.DECIMAL: (_DECIMAL,),
        ColumnType.BOOLEAN: ("BOOLEAN",),
        ColumnType.TIMESTAMP: ("TIMESTAMP",),
        ColumnType.JSON: ("JSON",),
    },
)


REDSHIFT = Dialect(
    name="redshift",
    type_names={
        # Redshift's TEXT is VARCHAR(256); unbounded text gets the largest VARCHAR instead.
        ColumnType.TEXT: "VARCHAR(65535)",
        ColumnType.BIGINT: "BIGINT",
        ColumnType.DOUBLE: "DOUBLE PRECISION",
        ColumnType.DECIMAL: _DECIMAL,
        ColumnType.BOOLEAN: "BOOLEAN",
        ColumnType.TIMESTAMP: "TIMESTAMP",
        ColumnType.JSON: "SUPER",
    },
    varchar="VARCHAR({n})",
    now_utc="GETDATE()",  # Redshift's now() is leader-node only; GETDATE() is UTC
    reported_types={
        ColumnType.TEXT: ("CHARACTER VARYING",),
        ColumnType.BIGINT: ("BIGINT",),
        ColumnType.DOUBLE: ("DOUBLE PRECISION",),
        ColumnType.DECIMAL: ("NUMERIC",),
        ColumnType.BOOLEAN: ("BOOLEAN",),
        ColumnType.TIMESTAMP: ("TIMESTAMP WITHOUT TIME ZONE",),
        ColumnType.JSON: ("SUPER",),
    },
    json_from_text="JSON_PARSE({})",
    # Redshift string literals always read backslash escapes; it has no E'' syntax.
    escaped_string_prefix="",
    # Rows of one key meet on one slice (the merge's NOT EXISTS probe stays local), and
    # the table is ordered by event time, which is how it is queried.
    table_options=" DISTSTYLE KEY DISTKEY ({dist}) COMPOUND SORTKEY ({sort})",
    enforces_unique=False,
    adds_not_null_bare=False,
)
REDSHIFT_MAX_VARCHAR = 65535  # bytes


def quote(identifier: str) -> str:
    """Double-quote an identifier already validated by config.validate_identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def quote_table(table: str) -> str:
    return ".".join(quote(part) for part in table.split("."))


def split_table(table: str, default_schema: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return (schema or default_schema), name


def column_type(dialect: Dialect, column: Column) -> str:
    if column.type is ColumnType.TEXT and column.max_length is not None:
        return dialect.varchar.format(n=column.max_length)
    return dialect.type_names[column.type]


def create_table_sql(dialect: Dialect, mapping: TableMapping, sort_key: str | None = None) -> str:
    lines = [
        f"  {quote(c.name)} {column_type(dialect, c)}{'' if c.nullable else ' NOT NULL'}"
        for c in mapping.load_columns
    ]
    lines.append(f"  {quote(LOADED_AT)} TIMESTAMP NOT NULL DEFAULT {dialect.now_utc}")
    lines.append(f"  PRIMARY KEY ({quote(DEDUPE_KEY)})")
    body = ",\n".join(lines)
    options = dialect.table_options.format(
        dist=quote(DEDUPE_KEY), sort=quote(sort_key or default_sort_key(mapping))
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_table(mapping.table)} (\n{body}\n){options}"


def default_sort_key(mapping: TableMapping) -> str:
    """The event time: the first required timestamp column, else the SQS sent time."""
    for column in mapping.columns:
        if column.type is ColumnType.TIMESTAMP and not column.nullable:
            return column.name
    return SENT_AT


def column_list(mapping: TableMapping) -> str:
    return ", ".join(quote(c.name) for c in mapping.load_columns)


def merge_sql(mapping: TableMapping, staging: str) -> str:
    """Insert staged rows whose key is not in the target yet.

    The unique key plus ON CONFLICT DO NOTHING makes concurrent merges of the same key by
    several workers safe: the second waits for the first and then skips the row. Inserting
    in key order makes every worker take those key locks in the same order, so two merges
    of overlapping batches queue behind each other instead of deadlocking.
    """
    cols = column_list(mapping)
    return (
        f"INSERT INTO {quote_table(mapping.table)} ({cols}) "
        f"SELECT {cols} FROM {quote(staging)} ORDER BY {quote(DEDUPE_KEY)} "
        f"ON CONFLICT ({quote(DEDUPE_KEY)}) DO NOTHING"
    )


def schema_problems(
    dialect: Dialect,
    mapping: TableMapping,
    found: Mapping[str, tuple[str, bool]],
) -> list[str]:
    """Compare the table's columns (name -> (reported type, nullable)) with the mapping."""
    if not found:
        return [f"table {mapping.table} does not exist (run `sluice init-db`)"]
    problems = []
    for column in mapping.load_columns:
        if column.name not in found:
            problems.append(f"column {column.name} is missing")
            continue
        reported = found[column.name][0]
        allowed = dialect.reported_types[column.type]
        if reported.upper() not in allowed:
            problems.append(f"column {column.name} is {reported}, expected {' or '.join(allowed)}")
        # A nullable column, dedupe_key included, is accepted: the worker writes a value in
        # every row, and an adopted table's older rows can hold no value (schema_plan).
    if LOADED_AT not in found:
        problems.append(f"column {LOADED_AT} is missing")
    return problems
