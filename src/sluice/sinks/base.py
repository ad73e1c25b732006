"""The narrow protocol the pipeline needs from a warehouse."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from sluice.errors import PermanentError
from sluice.faultpoints import FaultHook, NoFaults
from sluice.model import LoadResult, MappedRow

__all__ = ["FaultHook", "NoFaults", "RowsRejectedError", "Sink", "error_signature"]

if TYPE_CHECKING:
    from sluice.sinks.schema_plan import SchemaPlan


# Values inside an error text: quoted literals first (they may hold digits), then numbers.
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


def error_signature(text: str, code: str = "") -> str:
    """``text`` with its values taken out (quoted literals and numbers become ``?``), led by
    ``code`` (a SQLSTATE): two rows refused for one reason get equal signatures, and a
    signature can be logged where the text, which may quote a message's value, cannot."""
    stripped = _NUMBER.sub("?", _QUOTED.sub("?", text.lower()))
    return " ".join([code, *stripped.split()]).strip()


class RowsRejectedError(PermanentError):
    """The warehouse refused the data of this load (a value it cannot store).

    The loader splits the batch to find the rows at fault and dead-letters only those,
    unless the rows tried alone all fail with one ``signature`` while nothing loads: then
    the table, not the data, is at fault (see ``policies.RejectionPolicy``).
    """

    def __init__(self, message: str, *, signature: str | None = None) -> None:
        super().__init__(message)
        self.signature = error_signature(message) if signature is None else signature


class Sink(Protocol):
    """A warehouse table loaded in idempotent batches.

    ``load`` stages the rows and merges them into the target in one transaction, skipping
    keys already present. It raises TransientError (retry later; CommitUnknownError when
    the commit's outcome is unknown), RowsRejectedError (bad data), or SchemaError.
    """

    async def open(self) -> None: ...

    async def create_table(self) -> bool: ...

    async def check_schema(self) -> None: ...

    async def plan_schema(self) -> SchemaPlan:
        """What would bring the existing table to the mapping, only by adding."""
        ...

    async def apply_schema(self, plan: SchemaPlan) -> None:
        """Run ``plan.changes`` (``init-db --apply``)."""
        ...

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult: ...

    async def count_rows(self) -> int:
        """Rows in the target table (for the benchmark's scratch table and the tests)."""
        ...

    async def drop_table(self) -> None:
        """Drop the target table (the benchmark's scratch table; never called by a worker)."""
        ...

    async def close(self) -> None: ...
