"""Redshift sink: stage a batch (S3 + COPY, or multi-row INSERTs) and merge it.

The copy path is one transaction; the insert path stages in several transactions of at most
40 statements (temporary staging lives with the session) and merges in the last one, so a
crash between them leaves staging behind, never a half-merged batch.

The statement text is built in ``sql`` (pure, golden-tested); how it travels is a
``StatementRunner``: the Data API (``data_api``) or a direct connection
(``direct``). With S3 staging (``staging``) a load is two PutObjects, one
BatchExecuteStatement of five statements and one DeleteObjects, whatever the batch size.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from sluice.errors import PermanentError, SchemaError, SluiceError, TransientError
from sluice.faultpoints import FaultPoint
from sluice.mapping import TableMapping
from sluice.model import LoadResult, MappedRow
from sluice.sinks.base import FaultHook, NoFaults
from sluice.sinks.redshift.errors import SerializationConflict
from sluice.sinks.redshift.object_copy import CsvObject, object_copy_plan
from sluice.sinks.redshift.sql import (
    CURRENT_DATABASE_SQL,
    ISOLATION_SQL,
    MAX_BATCH_STATEMENTS,
    MAX_STATEMENT_BYTES,
    MAX_TRANSACTION_BYTES,
    Isolation,
    MergeLock,
    Transaction,
    copy_transaction,
    insert_transactions,
    isolation_of,
)
from sluice.sinks.redshift.staging import S3Stager, StagedBatch
from sluice.sinks.schema_plan import SchemaPlan, TableShape, plan_schema, unfilled_columns
from sluice.sinks.sql import (
    REDSHIFT,
    Dialect,
    create_table_sql,
    quote_table,
    schema_problems,
    split_table,
)

# The Data API refuses empty parameter values, so an unqualified table has its own query.
_COLUMNS = (
    "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
    " WHERE table_schema = {schema} AND table_name = :p1"
)
COLUMNS_SQL = _COLUMNS.format(schema=":p2")
COLUMNS_CURRENT_SCHEMA_SQL = _COLUMNS.format(schema="current_schema()")
# NOT NULL columns with no default (an IDENTITY column reports one): Sluice must fill them.
_REQUIRED = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = {schema}"
    " AND table_name = :p1 AND is_nullable = 'NO' AND column_default IS NULL"
)

_log = structlog.get_logger("sluice.redshift")
# A transaction that lost a serialisation race (1023 / 40001) is run again at once, a few
# times, with a short jittered pause so two losers do not collide again in step.
CONFLICT_ATTEMPTS = 5
CONFLICT_PAUSE = 0.1


class LoadPath(enum.Enum):
    COPY = "copy"  # S3 files + COPY: the fast path
    INSERT = "insert"  # multi-row INSERTs: no S3 needed, for small volumes


class StatementRunner(Protocol):
    """Where statements run: the Data API or a direct connection."""

    @property
    def requests(self) -> int: ...

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]: ...

    async def execute(self, sql: str) -> None: ...

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]: ...

    async def close(self) -> None: ...


class RedshiftSink:
    """Loads batches into a Redshift table (or PostgreSQL, with ``dialect=POSTGRES``)."""

    def __init__(
        self,
        runner: StatementRunner,
        mapping: TableMapping,
        *,
        stager: S3Stager | None = None,
        object_stager: S3Stager | None = None,
        iam_role: str | None = None,
        sort_key: str | None = None,
        dialect: Dialect = REDSHIFT,
        faults: FaultHook | None = None,
        max_statement_bytes: int = MAX_STATEMENT_BYTES,
        max_batch_statements: int = MAX_BATCH_STATEMENTS,
        max_transaction_bytes: int = MAX_TRANSACTION_BYTES,
        merge_lock: MergeLock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if (stager is not None or object_stager is not None) and not iam_role:
            raise ValueError("the copy path needs the IAM role Redshift reads S3 with")
        self._runner = runner
        self._mapping = mapping
        self._stager = stager
        # Where an object COPY's manifest goes: the load path's staging unless told
        # otherwise (a test's sink that loads by INSERT and copies objects).
        self._manifests = object_stager or stager
        self._iam_role = iam_role or ""
        self._sort_key = sort_key
        self._dialect = dialect
        self._faults = faults or NoFaults()
        self._max_bytes = max_statement_bytes
        self._max_statements = max_batch_statements
        self._max_transaction_bytes = max_transaction_bytes
        self._wanted_lock = merge_lock  # None: chosen from the database's isolation level
        self._lock: MergeLock | None = None
        self._sleep = sleep
        self.statements = 0  # SQL statements sent, for the benchmark's per-million figures
        self.conflict_retries = 0  # transactions run again after a serialisation conflict

    @property
    def runner(self) -> StatementRunner:
        return self._runner

    @property
    def path(self) -> LoadPath:
        return LoadPath.COPY if self._stager is not None else LoadPath.INSERT

    def create_table_sql(self) -> str:
        return create_table_sql(self._dialect, self._mapping, self._sort_key)

    async def open(self) -> None:
        await self._runner.query("SELECT 1")  # reachable, and the credentials work
        await self.merge_lock()
        if self._stager is not None:
            await self._stager.ping()
        if self._manifests is not None and self._manifests is not self._stager:
            await self._manifests.ping()

    async def merge_lock(self) -> MergeLock:
        """The lock mode loads use, settled once from the setting and the isolation level."""
        if self._lock is None:
            # An explicit LOCK is right at any level; the others depend on it.
            explicit = self._wanted_lock is MergeLock.TRANSACTION
            isolation = Isolation.UNKNOWN if explicit else await self._isolation()
            self._lock = _choose_lock(self._wanted_lock, isolation, self._mapping.table)
            _log.info("merge_lock", mode=self._lock.value, isolation=isolation.value)
        return self._lock

    async def _isolation(self) -> Isolation:
        try:
            [(database, *_)] = await self._runner.query(CURRENT_DATABASE_SQL)
            rows = await self._runner.query(ISOLATION_SQL[self._dialect.name])
        except TransientError:
            raise
        except (SluiceError, ValueError) as exc:  # no rights on the system table, no row
            _log.warning("isolation_unknown", error=str(exc))
            return Isolation.UNKNOWN
        return isolation_of(str(database), rows)

    async def count_rows(self) -> int:
        found = await self._runner.query(f"SELECT count(*) FROM {quote_table(self._mapping.table)}")
        return int(str(found[0][0])) if found else 0

    async def drop_table(self) -> None:
        await self._runner.execute(f"DROP TABLE {quote_table(self._mapping.table)}")

    async def _columns(self) -> dict[str, tuple[str, bool]]:
        schema, name = split_table(self._mapping.table, "")
        # Redshift folds unquoted names to lower case; Sluice's quoted names keep theirs.
        if schema:
            found = await self._runner.query(COLUMNS_SQL, (name, schema))
        else:
            found = await self._runner.query(COLUMNS_CURRENT_SCHEMA_SQL, (name,))
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in found}

    async def create_table(self) -> bool:
        existed = bool(await self._columns())
        await self._runner.execute(self.create_table_sql())
        return not existed

    async def plan_schema(self) -> SchemaPlan:
        schema, name = split_table(self._mapping.table, "")
        if schema:
            required = await self._runner.query(_REQUIRED.format(schema=":p2"), (name, schema))
        else:
            required = await self._runner.query(
                _REQUIRED.format(schema="current_schema()"), (name,)
            )
        rows = await self._runner.query(f"SELECT 1 FROM {quote_table(self._mapping.table)} LIMIT 1")
        shape = TableShape(
            await self._columns(),
            has_rows=bool(rows),
            has_unique_key=True,  # this merge needs none: LOCK + NOT EXISTS dedupes
            unfilled=unfilled_columns(self._mapping, [str(r[0]) for r in required]),
        )
        return plan_schema(self._dialect, self._mapping, shape)

    async def apply_schema(self, plan: SchemaPlan) -> None:
        """One statement at a time: each ADD COLUMN commits on its own, and a run that
        stops half-way is finished by running ``init-db --apply`` again (it plans afresh)."""
        for change in plan.changes:
            await self._runner.execute(change.sql)

    async def check_schema(self) -> None:
        problems = schema_problems(self._dialect, self._mapping, await self._columns())
        if problems:
            raise SchemaError(f"table {self._mapping.table}: " + "; ".join(problems))

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        lock = await self.merge_lock()
        if self._stager is None:
            plan = insert_transactions(
                self._dialect,
                self._mapping,
                rows,
                max_bytes=self._max_bytes,
                max_statements=self._max_statements,
                max_transaction_bytes=self._max_transaction_bytes,
                lock=lock,
            )
            self._faults.hit(FaultPoint.MID_STAGING)
            inserted = 0
            for transaction in plan:
                inserted += await self._commit(transaction)
            return LoadResult(inserted, len(rows) - inserted)
        staged = await self._stager.stage(self._mapping, rows)
        try:
            self._faults.hit(FaultPoint.MID_STAGING)
            plan_one = copy_transaction(
                self._dialect,
                self._mapping,
                staged.manifest_url,
                self._iam_role,
                len(rows),
                lock=lock,
            )
            inserted = await self._commit(plan_one)
        finally:
            await self._remove_quietly(self._stager, staged)
        return LoadResult(inserted, len(rows) - inserted)

    async def _remove_quietly(self, stager: S3Stager, staged: StagedBatch) -> None:
        """Staged objects are spent after a commit and useless after a failure (a retry
        stages anew); failing to remove them must not fail or repeat the load. The
        lifecycle rule on the staging prefix (docs/redshift.md) collects what is left."""
        try:
            await stager.remove(staged)
        except SluiceError as exc:
            _log.warning("staging_not_removed", manifest=staged.manifest_url, error=str(exc))

    @property
    def copies_objects(self) -> bool:
        """Whether ``copy_csv_object`` can run: Redshift reads S3 with the IAM role, and
        there is an S3 staging location for the manifest that names the object."""
        return self._manifests is not None and bool(self._iam_role)

    async def copy_csv_object(self, source: CsvObject) -> LoadResult:
        """COPY one Data Locker CSV object from S3 and merge it (``object_copy``), in one
        transaction, through a one-entry manifest staged for it and removed afterwards
        whatever the outcome. Raises as ``load`` does; any error means nothing was merged."""
        stager = self._manifests
        if stager is None:
            raise PermanentError("the COPY of an object needs S3 staging for its manifest")
        lock = await self.merge_lock()
        staged = await stager.stage_manifest([source.url])
        try:
            plan = object_copy_plan(
                self._dialect,
                self._mapping,
                source,
                staged.manifest_url,
                self._iam_role,
                lock=lock,
            )
            counts = await self._run(plan.transaction)
        finally:
            await self._remove_quietly(stager, staged)
        rows = max(counts[plan.rows_index], 0)
        inserted = max(counts[plan.transaction.merge_index], 0)
        return LoadResult(inserted, rows - inserted)

    async def _commit(self, transaction: Transaction) -> int:
        counts = await self._run(transaction)
        return max(counts[transaction.merge_index], 0)

    async def _run(self, transaction: Transaction) -> tuple[int, ...]:
        """The transaction's row counts, run again while it loses serialisation races."""
        self._faults.hit(FaultPoint.BEFORE_COMMIT)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            self.statements += len(transaction.statements)
            try:
                counts = await self._runner.run(transaction.statements)
            except SerializationConflict as exc:
                # Rolled back whole: nothing of this attempt is in the table.
                if attempt == CONFLICT_ATTEMPTS:
                    raise TransientError(f"{exc} ({attempt} attempts)") from exc
                self.conflict_retries += 1
                _log.info("merge_conflict_retry", attempt=attempt, error=str(exc))
                await self._sleep(CONFLICT_PAUSE * attempt * (0.5 + random.random()))  # noqa: S311
                continue
            return counts
        raise AssertionError("unreachable")  # the loop returns or raises

    async def close(self) -> None:
        await self._runner.close()


def _choose_lock(wanted: MergeLock | None, isolation: Isolation, table: str) -> MergeLock:
    """No LOCK only where SERIALIZABLE isolation makes racing merges abort instead of both
    committing; an explicit ``none`` against a database known to be otherwise is refused."""
    if wanted is MergeLock.NONE and isolation is Isolation.OTHER:
        raise PermanentError(
            f"SLUICE_REDSHIFT_MERGE_LOCK=none is unsafe for {table}: the database is not in "
            "SERIALIZABLE isolation, so racing loads could both insert a key; use auto or "
            "transaction, or ALTER DATABASE ... ISOLATION LEVEL SERIALIZABLE"
        )
    if wanted is not None:
        return wanted
    return MergeLock.NONE if isolation is Isolation.SERIALIZABLE else MergeLock.TRANSACTION
