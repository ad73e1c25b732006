"""An in-memory warehouse for pipeline unit tests: the Sink protocol over a dict.

The table is a dict keyed by dedupe key, so a merge that skips present keys is exact.
Knobs make it misbehave on purpose:

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

from sluice.errors import TransientError
from sluice.model import LoadResult, MappedRow
from sluice.sinks.base import RowsRejectedError

LoadHook = Callable[[Sequence[MappedRow]], Awaitable[None]]


@dataclass(frozen=True)
class LoadCall:
    """One ``load`` call: the keys it carried and how it ended."""

    keys: tuple[str, ...]
    message_ids: tuple[str, ...]
    outcome: str  # "committed", "transient" or "rejected"


@dataclass
class MemorySink:
    fail_next_loads: int = 0
    reject_marker: str | None = None
    before_load: LoadHook | None = None
    table: dict[str, tuple[object, ...]] = field(default_factory=dict)
    calls: list[LoadCall] = field(default_factory=list)
    opened: bool = False
    closed: bool = False
    created: bool = False
    pings: int = 0

    # -- the Sink protocol ---------------------------------------------------------------

    async def open(self) -> None:
        self.opened = True

    async def create_table(self) -> bool:
        created = not self.created
        self.created = True
        return created

    async def check_schema(self) -> None:
        return None

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        keys = tuple(row.dedupe_key for row in rows)
        ids = tuple(row.message.message_id for row in rows)
        if self.before_load is not None:
            await self.before_load(rows)
        if self.fail_next_loads > 0:
            self.fail_next_loads -= 1
            self.calls.append(LoadCall(keys, ids, "transient"))
            raise TransientError("warehouse unavailable (MemorySink.fail_next_loads)")
        if self.reject_marker is not None and any(
            self.reject_marker in str(value) for row in rows for value in row.values
        ):
            self.calls.append(LoadCall(keys, ids, "rejected"))
            raise RowsRejectedError(f"a value holds {self.reject_marker!r}")
        inserted = already = 0
        for row in rows:
            if row.dedupe_key in self.table:
                already += 1
            else:
                self.table[row.dedupe_key] = row.values
                inserted += 1
        self.calls.append(LoadCall(keys, ids, "committed"))
        return LoadResult(inserted, already)

    async def ping(self) -> None:
        self.pings += 1

    async def close(self) -> None:
        self.closed = True

    # -- for assertions ------------------------------------------------------------------

    @property
    def committed_keys(self) -> Counter[str]:
        """How many committed loads carried each key (1 for every key means no re-load)."""
        return Counter(k for call in self.calls if call.outcome == "committed" for k in call.keys)

    def outcomes(self) -> list[str]:
        return [call.outcome for call in self.calls]
