"""DuckDB sink: an embedded file, loaded through Arrow (row-wise executemany is ~200x slower).

DuckDB allows one writing process per file, so this sink suits one worker: the demo and
local runs. Its calls are blocking, so they run on one dedicated thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sluice.convert import DECIMAL_PRECISION, DECIMAL_SCALE, ColumnType
from sluice.errors import SchemaError, SluiceError, TransientError
from sluice.extras import DUCKDB as DUCKDB_EXTRA
from sluice.extras import missing_extra
from sluice.faultpoints import FaultPoint
from sluice.mapping import DEDUPE_KEY, TableMapping
from sluice.model import LoadResult, MappedRow
from sluice.sinks.base import FaultHook, NoFaults, RowsRejectedError, error_signature
from sluice.sinks.schema_plan import SchemaPlan, TableShape, plan_schema, unfilled_columns
from sluice.sinks.sql import (
    DUCKDB,
    create_table_sql,
    merge_sql,
    quote_table,
    schema_problems,
    split_table,
)

try:  # an extra: a Redshift or PostgreSQL install has neither (pyproject.toml)
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError as exc:
    raise missing_extra("SLUICE_SINK=duckdb", DUCKDB_EXTRA) from exc

T = TypeVar("T")
BATCH_VIEW = "sluice_batch"

_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.TEXT: pa.string(),
    ColumnType.BIGINT: pa.int64(),
    ColumnType.DOUBLE: pa.float64(),
    ColumnType.DECIMAL: pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
    ColumnType.JSON: pa.string(),
}


def translate(exc: duckdb.Error) -> SluiceError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(
        exc, duckdb.DataError | duckdb.ConstraintException | duckdb.InvalidInputException
    ):
        return RowsRejectedError(
            f"DuckDB refused the data: {text}",
            signature=error_signature(text, type(exc).__name__),
        )
    if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
        return SchemaError(f"DuckDB schema problem: {text}")
    return TransientError(f"DuckDB error ({type(exc).__name__}): {text}")


def to_arrow(mapping: TableMapping, rows: Sequence[MappedRow]) -> pa.Table:
    columns = mapping.load_columns
    by_column = list(zip(*(r.values for r in rows), strict=True)) if rows else [()] * len(columns)
    arrays = [
        pa.array(values, type=_ARROW_TYPES[c.type])
        for c, values in zip(columns, by_column, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


class DuckDBSink:
    def __init__(self, path: str, mapping: TableMapping, *, faults: FaultHook | None = None):
        self._path = path
        self._mapping = mapping
        self._faults = faults or NoFaults()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb")
        self._con: duckdb.DuckDBPyConnection | None = None

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, call)
        except duckdb.Error as exc:
            raise translate(exc) from exc

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            try:
                self._con = duckdb.connect(self._path)
            except duckdb.IOException as exc:
                # Most often another process holds the file's write lock.
                raise TransientError(f"cannot open DuckDB file {self._path}: {exc}") from exc
        return self._con

    async def open(self) -> None:
        await self._run(self._connection)

    async def count_rows(self) -> int:
        table = quote_table(self._mapping.table)

        def count() -> int:
            found = self._connection().execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(found[0]) if found else 0

        return await self._run(count)

    async def drop_table(self) -> None:
        table = quote_table(self._mapping.table)
        await self._run(lambda: self._connection().execute(f"DROP TABLE {table}"))

    async def create_table(self) -> bool:
        def create() -> bool:
            existed = bool(self._columns())
            self._connection().execute(create_table_sql(DUCKDB, self._mapping))
            return not existed

        return await self._run(create)

    def _columns(self) -> dict[str, tuple[str, bool]]:
        schema, name = split_table(self._mapping.table, "main")
        rows = (
            self._connection()
            .execute(
                "SELECT column_name, data_type, is_nullable = 'YES' "
                "FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, name],
            )
            .fetchall()
        )
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in rows}

    def _has_unique_key(self) -> bool:
        """A primary key, UNIQUE constraint or unique index on dedupe_key alone."""
        schema, name = split_table(self._mapping.table, "main")
        found = (
            self._connection()
            .execute(
                "SELECT count(*) FROM duckdb_constraints() WHERE schema_name = ? AND"
                " table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
                " AND constraint_column_names = [?]"
                " UNION ALL SELECT count(*) FROM duckdb_indexes() WHERE schema_name = ?"
                " AND table_name = ? AND is_unique AND expressions = ?",
                [schema, name, DEDUPE_KEY, schema, name, f"[{DEDUPE_KEY}]"],
            )
            .fetchall()
        )
        return any(int(count) for (count,) in found)

    def _shape(self) -> TableShape:
        schema, name = split_table(self._mapping.table, "main")
        con = self._connection()
        required = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ?"
            " AND table_name = ? AND is_nullable = 'NO' AND column_default IS NULL",
            [schema, name],
        ).fetchall()
        table = quote_table(self._mapping.table)
        has_rows = con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
        return TableShape(
            self._columns(),
            has_rows=has_rows,
            has_unique_key=self._has_unique_key(),
            unfilled=unfilled_columns(self._mapping, [str(r[0]) for r in required]),
        )

    async def plan_schema(self) -> SchemaPlan:
        return await self._run(lambda: plan_schema(DUCKDB, self._mapping, self._shape()))

    async def apply_schema(self, plan: SchemaPlan) -> None:
        # The columns in one transaction; DuckDB builds an index only on committed data,
        # so the index comes after (if it fails, `init-db --apply` again plans only it).
        columns = [c.sql for c in plan.changes if c.sql.startswith("ALTER TABLE")]
        others = [c.sql for c in plan.changes if not c.sql.startswith("ALTER TABLE")]

        def apply() -> None:
            con = self._connection()
            con.execute("BEGIN TRANSACTION")
            try:
                for sql in columns:
                    con.execute(sql)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            for sql in others:
                con.execute(sql)

        await self._run(apply)

    def _problems(self) -> list[str]:
        found = self._columns()
        problems = schema_problems(DUCKDB, self._mapping, found)
        if found and not self._has_unique_key():
            problems.append(f"no unique index on {DEDUPE_KEY} (needed for the merge)")
        return problems

    async def check_schema(self) -> None:
        problems = await self._run(self._problems)
        if problems:
            raise SchemaError(f"table {self._mapping.table}: " + "; ".join(problems))

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        try:
            table = to_arrow(self._mapping, rows)  # built on the loop thread: pure CPU
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            # A value the column's Arrow type cannot hold (a decimal past DECIMAL(20,6)):
            # the data is at fault, as PostgreSQL's "numeric field overflow" says.
            raise RowsRejectedError(
                f"DuckDB cannot store a value of this batch: {type(exc).__name__}: {exc}",
                signature=error_signature(str(exc), type(exc).__name__),
            ) from exc
        self._check_text_bounds(table)
        merge = merge_sql(self._mapping, BATCH_VIEW)

        def load() -> LoadResult:
            con = self._connection()
            con.execute("BEGIN TRANSACTION")
            try:
                con.register(BATCH_VIEW, table)
                self._faults.hit(FaultPoint.MID_STAGING)
                result = con.execute(merge).fetchone()
                con.unregister(BATCH_VIEW)
                self._faults.hit(FaultPoint.BEFORE_COMMIT)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            inserted = int(result[0]) if result else 0
            return LoadResult(inserted=inserted, already_present=len(rows) - inserted)

        return await self._run(load)

    def _check_text_bounds(self, table: pa.Table) -> None:
        """DuckDB's VARCHAR(n) does not enforce n, so the sink does, as PostgreSQL and Redshift
        would: a value past its column's bytes refuses the batch (vectorised: one pass per
        bounded column)."""
        for column in self._mapping.load_columns:
            if column.type is not ColumnType.TEXT or column.max_length is None:
                continue
            longest = pc.max(pc.binary_length(table.column(column.name))).as_py()
            if longest is not None and longest > column.max_length:
                raise RowsRejectedError(
                    f"value too long for column {column.name} "
                    f"({longest} bytes, the column holds {column.max_length})",
                    signature=f"value too long for column {column.name}",
                )

    async def close(self) -> None:
        def close() -> None:
            if self._con is not None:
                self._con.close()
                self._con = None

        await self._run(close)
        self._thread.shutdown(wait=True)
