"""The narrow protocol the pipeline needs from a warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sluice.config import FaultPoint
from sluice.errors import PermanentError
from sluice.model import LoadResult, MappedRow


class FaultHook(Protocol):
    """Test-only crash points; the production hook does nothing."""

    def hit(self, point: FaultPoint) -> None: ...


class NoFaults:
    def hit(self, point: FaultPoint) -> None:
        return None


class RowsRejectedError(PermanentError):
    """The warehouse refused the data of this load (a value it cannot store).

    The pipeline splits the batch to find the rows at fault and dead-letters only those.
    """


class Sink(Protocol):
    """A warehouse table loaded in idempotent batches.

    ``load`` stages the rows and merges them into the target in one transaction, skipping
    keys already present. It raises TransientError (retry later; CommitUnknownError when
    the commit's outcome is unknown), RowsRejectedError (bad data), or SchemaError.
    """

    async def open(self) -> None: ...

    async def create_table(self) -> bool: ...

    async def check_schema(self) -> None: ...

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
