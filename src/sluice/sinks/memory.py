"""An in-memory warehouse, the twin of the real sinks: the Sink protocol over a dict.

The table is a dict keyed by dedupe key, so a merge that skips present keys is exact. Held to
the same contract as PostgreSQL, DuckDB and Redshift (tests/contract): a missing table is a
SchemaError, and given the mapping it refuses what the table's columns could not store (a
decimal past DECIMAL(20,6), text past its column's bytes) as they do. Knobs make it misbehave
on purpose:

- ``fail_next_loads``: the next N ``load`` calls raise ``TransientError`` (an outage);
- ``reject_marker``: a load whose rows include a value containing this text raises
  ``RowsRejectedError`` (the warehouse refusing data it cannot store);
- ``before_load``: an async hook called with the rows at the start of every load call, to
  observe the world (the queue, the pipeline) at load time or to hold a load back.

Every call is recorded in ``calls`` with its outcome, so tests can assert what was tried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sluice.convert import DECIMAL_PRECISION, DECIMAL_SCALE, ColumnType
from sluice.errors import SchemaError, TransientError
from sluice.mapping import TableMapping
from sluice.model import LoadResult, MappedRow
from sluice.sinks.base import RowsRejectedError
from sluice.sinks.schema_plan import SchemaPlan

LoadHook = Callable[[Sequence[MappedRow]], Awaitable[None]]


@dataclass(frozen=True)
class LoadCall:
    """One ``load`` call: the keys it carried and how it ended."""

    keys: tuple[str, ...]
    message_ids: tuple[str, ...]
    outcome: str  # "committed", "transient" or "rejected"


@dataclass
class MemorySink:
    mapping: TableMapping | None = None  # given: values are checked against its columns
    table_exists: bool = True  # False: an empty warehouse, create_table() makes the table
    fail_next_loads: int = 0
    reject_marker: str | None = None
    before_load: LoadHook | None = None
    table: dict[str, tuple[object, ...]] = field(default_factory=dict)
    calls: list[LoadCall] = field(default_factory=list)
    opened: bool = False
    closed: bool = False
    created: bool = False

    # -- the Sink protocol ---------------------------------------------------------------

    async def open(self) -> None:
        self.opened = True

    async def create_table(self) -> bool:
        created = not self.table_exists
        self.table_exists = self.created = True
        return created

    async def check_schema(self) -> None:
        if not self.table_exists:
            raise SchemaError("table does not exist: run `sluice init-db`")

    async def plan_schema(self) -> SchemaPlan:
        """The twin's table always has the mapping's shape: nothing to add, once it exists."""
        if not self.table_exists:
            raise SchemaError("table does not exist: run `sluice init-db`")
        return SchemaPlan(self.mapping.table if self.mapping else "memory", (), (), ())

    async def apply_schema(self, plan: SchemaPlan) -> None:
        if plan.changes:
            raise SchemaError("the memory twin has no columns to add")

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        keys = tuple(row.dedupe_key for row in rows)
        ids = tuple(row.message.message_id for row in rows)
        if self.before_load is not None:
            await self.before_load(rows)
        if not self.table_exists:
            raise SchemaError("table does not exist: run `sluice init-db`")
        if self.fail_next_loads > 0:
            self.fail_next_loads -= 1
            self.calls.append(LoadCall(keys, ids, "transient"))
            raise TransientError("warehouse unavailable (MemorySink.fail_next_loads)")
        if self.reject_marker is not None and any(
            self.reject_marker in str(value) for row in rows for value in row.values
        ):
            self.calls.append(LoadCall(keys, ids, "rejected"))
            raise RowsRejectedError(f"a value holds {self.reject_marker!r}")
        refused = self._unstorable(rows)
        if refused is not None:
            self.calls.append(LoadCall(keys, ids, "rejected"))
            raise RowsRejectedError(refused)
        inserted = already = 0
        for row in rows:
            if row.dedupe_key in self.table:
                already += 1
            else:
                self.table[row.dedupe_key] = row.values
                inserted += 1
        self.calls.append(LoadCall(keys, ids, "committed"))
        return LoadResult(inserted, already)

    async def count_rows(self) -> int:
        if not self.table_exists:
            raise SchemaError("table does not exist: run `sluice init-db`")
        return len(self.table)

    async def drop_table(self) -> None:
        self.table.clear()
        self.table_exists = False

    async def close(self) -> None:
        self.closed = True

    def _unstorable(self, rows: Sequence[MappedRow]) -> str | None:
        """What a real table would refuse in ``rows``, as its error text, or None."""
        if self.mapping is None:
            return None
        columns = self.mapping.load_columns
        for row in rows:
            for column, value in zip(columns, row.values, strict=True):
                if (
                    column.type is ColumnType.DECIMAL
                    and isinstance(value, Decimal)
                    and value.adjusted() >= DECIMAL_PRECISION - DECIMAL_SCALE
                ):
                    return f"numeric field overflow in column {column.name}"
                if (
                    column.max_length is not None
                    and isinstance(value, str)
                    and len(value.encode("utf-8", "surrogatepass")) > column.max_length
                ):
                    return f"value too long for column {column.name}"
        return None

    # -- for assertions ------------------------------------------------------------------

    @property
    def committed_keys(self) -> Counter[str]:
        """How many committed loads carried each key (1 for every key means no re-load)."""
        return Counter(k for call in self.calls if call.outcome == "committed" for k in call.keys)

    def outcomes(self) -> list[str]:
        return [call.outcome for call in self.calls]
