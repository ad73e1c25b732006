"""Pure data passed between the stages of the pipeline."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sluice.errors import FailureReason

SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # the largest message SQS carries (its MaximumMessageSize)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One SQS message as received, with the attributes Sluice asks for."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int
    # The producer's message attributes, (name, DataType, value) sorted by name; value is
    # bytes for Binary types, else text. Carried so a dead letter keeps what was sent.
    attributes: tuple[tuple[str, str, str | bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class MappedRow:
    """A message turned into one row of the target table, in mapping column order."""

    message: ReceivedMessage
    dedupe_key: str
    values: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message refused for good, with why."""

    message: ReceivedMessage
    reason: FailureReason
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that carries nothing to load (an S3 test event): deleted, counted."""

    message: ReceivedMessage
    why: str


Decoded = MappedRow | DeadLetter | Ignored


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one committed load did: rows new to the target, and rows whose key was there."""

    inserted: int
    already_present: int


@dataclass(frozen=True, slots=True)
class SettleResult:
    """Outcome of a batched SQS call (delete or change visibility) over many messages."""

    succeeded: tuple[ReceivedMessage, ...]
    failed: tuple[tuple[ReceivedMessage, str], ...]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class StopReason(enum.Enum):
    DRAINED = "drained"
    SIGNALLED = "signalled"
