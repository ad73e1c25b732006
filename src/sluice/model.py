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


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One S3 object an event notification announces (key already URL-decoded)."""

    bucket: str
    key: str
    size: int = 0
    etag: str = ""  # without quotes; an If-Match on every read pins this version
    version_id: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class ObjectsAnnounced:
    """A message whose rows live in the objects it names (an S3 event notification).

    ``objects`` are to be read and loaded; ``skipped`` are named but carry no rows to load
    (a ``_SUCCESS`` marker, a removal, an object of another type), each with why.
    """

    message: ReceivedMessage
    objects: tuple[ObjectRef, ...]
    skipped: tuple[tuple[ObjectRef, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectsSettled:
    """What became of an announcing message once its objects were dealt with.

    ``dead`` set: dead-letter it; ``retry``: keep it (a transient failure: it reappears after
    its visibility timeout and is loaded again, the merge absorbing what had loaded);
    otherwise delete it. The counts are the rows its objects brought.
    """

    message: ReceivedMessage
    dead: DeadLetter | None = None
    retry: bool = False
    inserted: int = 0
    already_present: int = 0
    rows_failed: int = 0


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
