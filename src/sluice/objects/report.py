"""The per-object error report: rows that did not fit, as dead letters on the DLQ.

One DLQ message per row: the body is the row as a JSON object ``{header: value}`` (or, for a
record that is not CSV, the JSON list of what was read), with ``sluice.reason``
(``row_does_not_fit`` or ``rejected_by_warehouse``), ``sluice.detail`` (the object's URL, the
row number and why; never a value), ``sluice.source_message_id`` (``<notification id>#
<object>:<row>``) and the attributes ``object_url`` and ``object_row``. A fixed row sent back
to the source queue as it stands loads like any JSON event, with the key it would have had.

Logged at info: per object, how many rows failed and the first row numbers; each row's
detail only at debug. Without a DLQ nothing can hold the report, so the message is kept and
the queue's redrive policy moves it after its receives run out (docs/data-locker.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from sluice.errors import TransientError
from sluice.model import DeadLetter, ObjectRef
from sluice.sources.base import DeadLetterTarget

LOGGED_ROW_NUMBERS = 10


class ErrorReport:
    def __init__(
        self, target: DeadLetterTarget | None, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._target = target
        self._log = log
        self.rows_sent = 0

    async def send(self, ref: ObjectRef, letters: Sequence[DeadLetter]) -> None:
        """Every letter on the DLQ, or TransientError (the message is tried again later)."""
        if not letters:
            return
        rows = [letter.message.message_id.rpartition(":")[2] for letter in letters]
        self._log.info(
            "object_rows_failed",
            object=ref.url,
            rows=len(letters),
            reasons=sorted({letter.reason.value for letter in letters}),
            first_rows=rows[:LOGGED_ROW_NUMBERS],
        )
        for letter in letters:
            self._log.debug("object_row_failed", object=ref.url, detail=letter.detail)
        if self._target is None:
            raise TransientError(
                f"{ref.url}: {len(letters)} row(s) do not fit and no SLUICE_DLQ_URL is set to "
                "take the error report: the message is left to the redrive policy"
            )
        result = await self._target.send(letters)
        self.rows_sent += len(result.succeeded)
        if result.failed:
            _, why = result.failed[0]
            raise TransientError(
                f"{ref.url}: {len(result.failed)} row(s) of the error report not sent: {why}"
            )
