"""COPY a Data Locker CSV object straight from S3, then the same merge. Pure; golden-tested.

The streaming path keys each row by the SHA-256 of its canonical JSON ``{header: value}``
(``canonical.event_key``: keys sorted, compact, orjson's escapes). This path computes the
same key in SQL, from the same text, so a row loaded by either path has one key and loading
an object by both adds nothing (tests/integration/test_data_locker_copy.py checks the two
agree on PostgreSQL).

One transaction:
1. (``LOCK`` the target, as the merge lock says)
2. ``CREATE TEMP TABLE sluice_object`` with one text column per CSV column, by position;
3. ``COPY sluice_object FROM '<manifest>' MANIFEST CSV [GZIP] IGNOREHEADER 1`` with
   ``MAXERROR 0``. The manifest, written to the sink's S3 staging location for this COPY
   alone, names the object as its one mandatory entry: a bare ``FROM 's3://bucket/key'``
   is an object *prefix* to Redshift, which would also load ``<key>.tmp`` or ``<key>1``
   beside it (and need ``s3:ListBucket`` to find them);
4. the staging table, filled by one ``INSERT ... SELECT`` that builds each row's canonical
   JSON, its key (``SHA2``), its ``raw_event`` and each mapped column's value;
5. the merge (``sql.merge_sql``, unchanged), then both temporary tables dropped.

Sluice's converters accept more than SQL can reproduce exactly (``" true "``, ISO times with
a zone, any JSON text...). So the ``INSERT`` takes a row only in the *plain form* where a SQL
cast gives exactly what the converter gives, and divides by zero on any other row, which
aborts the whole transaction: the object is then loaded by the streaming path, which reports
each row that does not fit. The plain forms, per column type:

- text: any value (bounded columns: at most ``max_length`` UTF-8 bytes);
- timestamp: ``yyyy-mm-dd hh:mm:ss[.f{1,6}]`` (years 1000-9999);
- decimal: ``[-]d{1,14}[.d{1,6}]`` (no rounding needed); bigint: ``[-]d{1,18}``;
- boolean: ``true false t f yes no y n 1 0`` in any case;
- json: text that starts with ``{`` or ``[`` and ends with ``}`` or ``]`` (the warehouse's
  JSON parser then decides; invalid JSON aborts);
- an empty cell: NULL where the column is nullable (required: not plain).
And the row's text holds no control character but tab, newline and carriage return (the only
ones escaped here; orjson writes the others as ``\\b``, ``\\f``, ``\\u00XX``); the test is
``[[:cntrl:]]``, which also sends a row holding DEL to the streaming path (conservative).

A mapping qualifies (``copy_problem``) when every column's path is one header, none is
``double`` (the decimal-to-binary rounding of a warehouse's cast is not specified to match
Python's), and the dedupe key is the row's content (no ``dedupe_key`` paths). An object
qualifies when its header names no column twice.

``message_id`` is ``<notification id>#<object index>:copy`` for every row: COPY does not
number rows. ``raw_event`` holds the canonical JSON (keys sorted), the same object the
streaming path stores in the header's order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from sluice.convert import DECIMAL_PRECISION, DECIMAL_SCALE, ColumnType
from sluice.mapping import DEDUPE_KEY, MESSAGE_ID, RAW_EVENT, SENT_AT, Column, TableMapping
from sluice.sinks.redshift.sql import (
    STAGING,
    MergeLock,
    Transaction,
    drop_staging_sql,
    literal,
    lock_sql,
    merge_sql,
    staging_table_sql,
    string_literal,
)
from sluice.sinks.sql import REDSHIFT, Dialect, column_list, quote

OBJECT_TABLE = "sluice_object"
# COPY reads a cell holding exactly this as NULL (its default, \N, is text an export may
# hold). A cell that does hold it becomes NULL, which fails the row's plain-form test (the
# row's JSON is NULL), so the object streams: never a wrong value, at worst the slower path.
NULL_MARKER = "sluice:null:7d1f"
_RAW_TEXT = {"redshift": "VARCHAR(65535)", "postgres": "TEXT"}
_SHA256 = {"redshift": "SHA2({}, 256)", "postgres": "encode(sha256(convert_to({}, 'UTF8')), 'hex')"}
_JSON_OF_TEXT = {"redshift": "JSON_PARSE({})", "postgres": "CAST({} AS JSONB)"}
# orjson's short escapes that SQL reproduces here; any other control character is not plain.
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
# Any control character left after those escapes (DEL and C1 too: conservative).
_CONTROL = "[[:cntrl:]]"
_TIMESTAMP = "^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?$"
_DECIMAL = f"^-?[0-9]{{1,{DECIMAL_PRECISION - DECIMAL_SCALE}}}([.][0-9]{{1,{DECIMAL_SCALE}}})?$"
_BIGINT = "^-?[0-9]{1,18}$"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


class CopyForm(enum.Enum):
    """What kind of object COPY reads."""

    CSV = "CSV"
    CSV_GZIP = "CSV GZIP"


@dataclass(frozen=True)
class CsvObject:
    """One CSV object to COPY: where, its header (read from its first bytes), its form, and
    what every row's ``message_id`` and ``sent_at`` are."""

    url: str
    header: tuple[str, ...]
    form: CopyForm
    message_id: str
    sent_at: datetime | None


@dataclass(frozen=True)
class ObjectCopyPlan:
    """The transaction, and which statement's row count is the object's rows."""

    transaction: Transaction
    rows_index: int


def copy_problem(mapping: TableMapping) -> str | None:
    """Why objects for ``mapping`` cannot be loaded by COPY, or None."""
    if mapping.dedupe_paths:
        return "the dedupe key is made of paths, not the row's content"
    for column in mapping.columns:
        if len(column.path) != 1:
            return f"{column.name}: its path is not one CSV column"
        if column.type is ColumnType.DOUBLE:
            return f"{column.name}: a double column (converted by Python only)"
    return None


def header_copy_problem(header: Sequence[str]) -> str | None:
    """Why an object with this header cannot be loaded by COPY, or None."""
    if len(set(header)) != len(header):
        return "the header names a column twice"
    if not header:
        return "no header"
    return None


def object_copy_plan(
    dialect: Dialect,
    mapping: TableMapping,
    source: CsvObject,
    manifest_url: str,
    iam_role: str,
    *,
    lock: MergeLock = MergeLock.NONE,
) -> ObjectCopyPlan:
    """The transaction loading ``source`` through ``manifest_url``, a manifest naming
    ``source.url`` alone (``staging.S3Stager.stage_manifest``)."""
    statements = [
        raw_table_sql(dialect, len(source.header)),
        copy_object_sql(source, manifest_url, iam_role, len(source.header)),
        staging_table_sql(dialect, mapping),
        insert_from_object_sql(dialect, mapping, source),
        merge_sql(mapping),
        drop_staging_sql(),
        f"DROP TABLE {quote(OBJECT_TABLE)}",
    ]
    if lock is MergeLock.TRANSACTION:
        statements.insert(0, lock_sql(mapping))
    rows_index = len(statements) - 4
    return ObjectCopyPlan(Transaction(tuple(statements), rows_index + 1, 0), rows_index)


def _raw(index: int) -> str:
    return quote(f"c{index + 1}")


def raw_table_sql(dialect: Dialect, width: int) -> str:
    kind = _RAW_TEXT[dialect.name]
    lines = ",\n".join(f"  {_raw(i)} {kind}" for i in range(width))
    return f"CREATE TEMP TABLE {quote(OBJECT_TABLE)} (\n{lines}\n)"


def copy_object_sql(source: CsvObject, manifest_url: str, iam_role: str, width: int) -> str:
    """Redshift's COPY of the object's CSV into the raw table, through the manifest that
    names it alone. No version: COPY reads the object's current version (docs/redshift.md
    says what that means)."""
    columns = ", ".join(_raw(i) for i in range(width))
    return (
        f"COPY {quote(OBJECT_TABLE)} ({columns}) "
        f"FROM {string_literal(REDSHIFT, manifest_url)} "
        f"IAM_ROLE {string_literal(REDSHIFT, iam_role)} MANIFEST "
        f"{source.form.value} IGNOREHEADER 1 NULL AS {string_literal(REDSHIFT, NULL_MARKER)} "
        "MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF"
    )


def _escaped(dialect: Dialect, cell: str) -> str:
    expression = cell
    for plain, escaped in _ESCAPES:
        target = f"CHR({ord(plain)})" if plain in "\n\r\t" else string_literal(dialect, plain)
        expression = f"REPLACE({expression}, {target}, {string_literal(dialect, escaped)})"
    return expression


def canonical_json_sql(dialect: Dialect, header: Sequence[str]) -> str:
    """The row's canonical JSON text: ``{"<header>":"<value>",...}``, keys sorted."""
    parts: list[str] = []
    text = "{"
    for i, name in sorted(enumerate(header), key=lambda item: item[1]):
        text += ("," if text != "{" else "") + orjson.dumps(name).decode() + ':"'
        parts.extend((string_literal(dialect, text), _escaped(dialect, _raw(i))))
        text = '"'
    parts.append(string_literal(dialect, text + "}"))
    return " || ".join(parts)


def _plain(column: Column, cell: str) -> str:
    """The SQL test that ``cell`` is in the plain form for ``column``."""
    if column.type is ColumnType.TEXT:
        return f"OCTET_LENGTH({cell}) <= {column.max_length}" if column.max_length else "TRUE"
    if column.type is ColumnType.BOOLEAN:
        words = ", ".join(f"'{w}'" for w in (*_TRUE, *_FALSE))
        test = f"LOWER({cell}) IN ({words})"
    elif column.type is ColumnType.JSON:
        test = f"({cell} ~ '^[{{[]' AND {cell} ~ '[]}}]$')"
    else:
        pattern = {
            ColumnType.TIMESTAMP: _TIMESTAMP,
            ColumnType.DECIMAL: _DECIMAL,
            ColumnType.BIGINT: _BIGINT,
        }[column.type]
        test = f"{cell} ~ '{pattern}'"
    # An empty cell is NULL for these types: plain only where the column may be NULL.
    return f"({cell} = '' OR {test})" if column.nullable else test


def _value(dialect: Dialect, column: Column, cell: str) -> str:
    """The column's value from a plain cell, as the converter makes it."""
    if column.type is ColumnType.TEXT:
        return cell
    present = f"NULLIF({cell}, '')"
    if column.type is ColumnType.BOOLEAN:
        words = ", ".join(f"'{w}'" for w in _TRUE)
        return f"CASE WHEN {cell} = '' THEN NULL ELSE LOWER({cell}) IN ({words}) END"
    if column.type is ColumnType.JSON:
        return _JSON_OF_TEXT[dialect.name].format(present)
    kind = dialect.type_names[column.type]
    return f"CAST({present} AS {kind})"


def insert_from_object_sql(dialect: Dialect, mapping: TableMapping, source: CsvObject) -> str:
    """Staging rows from the raw table; any row not in the plain form divides by zero."""
    position = {name: i for i, name in enumerate(source.header)}
    values: list[str] = []
    tests = [f"NOT (sluice_row.sluice_json ~ {string_literal(dialect, _CONTROL)})"]
    for column in mapping.columns:
        index = position.get(column.path[0])
        if index is None:
            values.append("NULL")  # a nullable column the export lacks (header_problem)
            continue
        cell = f"sluice_row.{_raw(index)}"
        values.append(_value(dialect, column, cell))
        test = _plain(column, cell)
        if test != "TRUE":
            tests.append(test)
    json_text = "sluice_row.sluice_json"
    system = {
        DEDUPE_KEY: _SHA256[dialect.name].format(json_text),
        MESSAGE_ID: string_literal(dialect, source.message_id),
        SENT_AT: literal(dialect, ColumnType.TIMESTAMP, source.sent_at),
        RAW_EVENT: _JSON_OF_TEXT[dialect.name].format(json_text),
    }
    values.extend(system[c.name] for c in mapping.load_columns[len(mapping.columns) :])
    return (
        f"INSERT INTO {quote(STAGING)} ({column_list(mapping)}) "
        f"SELECT {', '.join(values)} FROM "
        f"(SELECT {quote(OBJECT_TABLE)}.*, {canonical_json_sql(dialect, source.header)} "
        f"AS sluice_json FROM {quote(OBJECT_TABLE)}) AS sluice_row "
        f"WHERE 1 / CASE WHEN {' AND '.join(tests)} THEN 1 ELSE 0 END = 1"
    )
