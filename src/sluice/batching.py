"""Micro-batches: what a flush carries, and when it is due. Pure; the clock is injected."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sluice.model import DeadLetter, Decoded, Ignored, MappedRow, ReceivedMessage


class FlushCause(enum.Enum):
    ROWS = "rows"
    BYTES = "bytes"
    AGE = "age"
    STOP = "stop"


@dataclass(frozen=True)
class FlushPolicy:
    """Flush on messages, bytes or age, whichever comes first.

    The age bound comes from the visibility timeout (checked in config): a batch must be
    loaded and deleted well before its messages could reappear; the heartbeat covers the rest.
    """

    max_rows: int
    max_bytes: int
    max_age: float

    def due(self, batch: Batch, now: float) -> FlushCause | None:
        if not batch.messages:
            return None
        if len(batch.messages) >= self.max_rows:
            return FlushCause.ROWS
        if batch.size_bytes >= self.max_bytes:
            return FlushCause.BYTES
        if now - batch.opened_at >= self.max_age:
            return FlushCause.AGE
        return None

    def seconds_left(self, batch: Batch, now: float) -> float:
        """How long until age makes ``batch`` due (max_age for an empty batch)."""
        if not batch.messages:
            return self.max_age
        return max(0.0, self.max_age - (now - batch.opened_at))


@dataclass
class Batch:
    """Decoded messages waiting for one load. Rows with equal keys collapse here."""

    opened_at: float
    rows: dict[str, MappedRow] = field(default_factory=dict)
    in_batch_duplicates: list[MappedRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    messages: list[ReceivedMessage] = field(default_factory=list)
    size_bytes: int = 0

    def add(self, item: Decoded, now: float) -> None:
        if not self.messages:
            self.opened_at = now  # age counts from the first message, not from creation
        self.messages.append(item.message)
        self.size_bytes += len(item.message.body)
        if isinstance(item, MappedRow):
            if item.dedupe_key in self.rows:
                self.in_batch_duplicates.append(item)
            else:
                self.rows[item.dedupe_key] = item
        elif isinstance(item, DeadLetter):
            self.dead_letters.append(item)
        else:
            self.ignored.append(item)
