"""PostgreSQL sink (psycopg 3): COPY into a temp staging table, merge, one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql as pgsql

from sluice.errors import CommitUnknownError, SchemaError, SluiceError, TransientError
from sluice.faultpoints import FaultPoint
from sluice.mapping import DEDUPE_KEY, TableMapping
from sluice.model import LoadResult, MappedRow
from sluice.sinks.base import FaultHook, NoFaults, RowsRejectedError, error_signature
from sluice.sinks.pool import Connection, ConnectionSlots, rollback_quietly
from sluice.sinks.schema_plan import SchemaPlan, TableShape, plan_schema, unfilled_columns
from sluice.sinks.sql import (
    POSTGRES,
    column_list,
    create_table_sql,
    merge_sql,
    quote,
    quote_table,
    schema_problems,
    split_table,
)

STAGING = "sluice_staging"
# SQLSTATE classes worth retrying: connection, resources, operator intervention, system,
# and transaction rollback (serialization failures, deadlocks).
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40", "XX")
_TRANSIENT_STATES = ("55P03",)  # lock_not_available
# Data exceptions and integrity violations: the rows are at fault, not the warehouse.
_DATA_CLASSES = ("22", "23")
_SCHEMA_STATES = ("42P01", "42703", "42804", "42P10")


def translate(exc: psycopg.Error, *, commit_sent: bool, secret: str | None) -> SluiceError:
    """Map a psycopg error onto Sluice's families; the password never leaks into text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    state = exc.sqlstate or ""
    if commit_sent and (isinstance(exc, psycopg.OperationalError) or state.startswith("08")):
        return CommitUnknownError(f"connection lost during COMMIT: {text}")
    if state.startswith(_DATA_CLASSES):
        return RowsRejectedError(
            f"PostgreSQL refused the data [{state}]: {text}", signature=error_signature(text, state)
        )
    if state in _SCHEMA_STATES:
        return SchemaError(f"PostgreSQL schema problem [{state}]: {text}")
    if not state or state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES:
        return TransientError(f"PostgreSQL unavailable [{state or 'no state'}]: {text}")
    return TransientError(f"PostgreSQL error [{state}]: {text}")


async def _forget_staging(conn: Connection) -> None:
    """Drop this session's staging table after a failed load.

    It was made ``LIKE`` the target when the session first loaded. If the failure is the
    target changing under a running worker (``ALTER COLUMN ... TYPE``), a stale staging
    table would keep failing, with the old types, after the target is fixed; made afresh,
    it follows the target as it is now. Failures are rare, so the cost does not matter.
    """
    if conn.closed or conn.broken:
        return
    try:
        await conn.execute(pgsql.SQL(f"DROP TABLE IF EXISTS pg_temp.{quote(STAGING)}"))
    except psycopg.Error:
        await conn.close()  # its slot reconnects, with no staging table, on next checkout


class PostgresSink:
    """Loads batches over up to ``connections`` connections, one transaction per batch."""

    def __init__(
        self,
        dsn: str,
        mapping: TableMapping,
        *,
        connections: int = 1,
        application_name: str = "sluice",
        faults: FaultHook | None = None,
    ) -> None:
        self._dsn = dsn
        self._secret = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        self._mapping = mapping
        self._faults = faults or NoFaults()
        self._app = application_name
        self._pool = ConnectionSlots(connections, self._connect)

    def _error(self, exc: psycopg.Error, *, commit_sent: bool = False) -> SluiceError:
        return translate(exc, commit_sent=commit_sent, secret=str(self._secret or "") or None)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=10, application_name=self._app
            )
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return conn

    async def open(self) -> None:
        conn = await self._pool.checkout()
        self._pool.checkin(conn)

    async def count_rows(self) -> int:
        conn = await self._pool.checkout()
        try:
            table = quote_table(self._mapping.table)
            cursor = await conn.execute(pgsql.SQL(f"SELECT count(*) FROM {table}"))
            found = await cursor.fetchone()
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)
        return int(str(found[0])) if found else 0

    async def drop_table(self) -> None:
        conn = await self._pool.checkout()
        try:
            await conn.execute(pgsql.SQL(f"DROP TABLE {quote_table(self._mapping.table)}"))
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)

    async def create_table(self) -> bool:
        """Create the target table if missing. True when it was created."""
        conn = await self._pool.checkout()
        try:
            existed = bool(await self._columns(conn))
            await conn.execute(pgsql.SQL(create_table_sql(POSTGRES, self._mapping)))
            return not existed
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)

    async def _columns(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]]
    ) -> dict[str, tuple[str, bool]]:
        schema, name = split_table(self._mapping.table, "")
        cursor = await conn.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE table_schema = COALESCE(NULLIF(%s, ''), current_schema())"
            " AND table_name = %s",
            (schema, name),
        )
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in await cursor.fetchall()}

    async def _has_unique_key(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
        cursor = await conn.execute(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indnatts = 1"
            " AND a.attname = %s",
            (quote_table(self._mapping.table), DEDUPE_KEY),
        )
        return await cursor.fetchone() is not None

    async def _shape(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> TableShape:
        schema, name = split_table(self._mapping.table, "")
        cursor = await conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = COALESCE(NULLIF(%s, ''), current_schema())"
            " AND table_name = %s AND is_nullable = 'NO' AND column_default IS NULL"
            " AND is_identity = 'NO' AND is_generated = 'NEVER'",
            (schema, name),
        )
        required = [str(r[0]) for r in await cursor.fetchall()]
        table = quote_table(self._mapping.table)
        cursor = await conn.execute(pgsql.SQL(f"SELECT EXISTS (SELECT 1 FROM {table})"))
        has_rows = await cursor.fetchone()
        return TableShape(
            await self._columns(conn),
            has_rows=bool(has_rows and has_rows[0]),
            has_unique_key=await self._has_unique_key(conn),
            unfilled=unfilled_columns(self._mapping, required),
        )

    async def plan_schema(self) -> SchemaPlan:
        conn = await self._pool.checkout()
        try:
            return plan_schema(POSTGRES, self._mapping, await self._shape(conn))
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)

    async def apply_schema(self, plan: SchemaPlan) -> None:
        """All the changes or none: PostgreSQL's DDL is transactional."""
        conn = await self._pool.checkout()
        try:
            async with conn.transaction():
                for change in plan.changes:
                    await conn.execute(pgsql.SQL(change.sql))
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)

    async def check_schema(self) -> None:
        conn = await self._pool.checkout()
        try:
            found = await self._columns(conn)
            problems = schema_problems(POSTGRES, self._mapping, found)
            if found and not await self._has_unique_key(conn):
                problems.append(f"no unique index on {DEDUPE_KEY} (needed for the merge)")
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)
        if problems:
            raise SchemaError(f"table {self._mapping.table}: " + "; ".join(problems))

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        conn = await self._pool.checkout()
        try:
            return await self._load_on(conn, rows)
        finally:
            self._pool.checkin(conn)

    async def _load_on(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], rows: Sequence[MappedRow]
    ) -> LoadResult:
        commit_sent = False
        try:
            await conn.execute(
                pgsql.SQL(
                    f"CREATE TEMP TABLE IF NOT EXISTS {quote(STAGING)} "
                    f"(LIKE {quote_table(self._mapping.table)} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS"
                )
            )
            await conn.execute("BEGIN")
            async with conn.cursor() as cur:
                copy_sql = f"COPY {quote(STAGING)} ({column_list(self._mapping)}) FROM STDIN"
                half = len(rows) // 2
                async with cur.copy(pgsql.SQL(copy_sql)) as copy:
                    for index, row in enumerate(rows):
                        if index == half:
                            self._faults.hit(FaultPoint.MID_STAGING)
                        await copy.write_row(row.values)
                await cur.execute(pgsql.SQL(merge_sql(self._mapping, STAGING)))
                inserted = max(cur.rowcount, 0)
            self._faults.hit(FaultPoint.BEFORE_COMMIT)
            commit_sent = True
            await conn.execute("COMMIT")
        except psycopg.Error as exc:
            await rollback_quietly(conn)
            await _forget_staging(conn)
            raise self._error(exc, commit_sent=commit_sent) from exc
        except BaseException:
            await rollback_quietly(conn)
            raise
        return LoadResult(inserted=inserted, already_present=len(rows) - inserted)

    async def close(self) -> None:
        await self._pool.close()
