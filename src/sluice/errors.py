"""The two error families Sluice knows, and the reasons a message can fail for good.

    SluiceError
    ├── ConfigError          a setting is wrong; start-up stops and names it
    ├── TransientError       try again later: throttling, 5xx, connection lost, warehouse down
    │   └── CommitUnknownError   the connection died while COMMIT was in flight
    └── PermanentError       trying again cannot help
        ├── MessageError     one message is bad (carries a FailureReason); it goes to the DLQ
        └── SchemaError      the target table does not match the mapping

Driver exceptions are translated into these at the edge (one function per driver),
always chained with ``from`` so the original stays visible in tracebacks.
"""

from __future__ import annotations

import enum


class FailureReason(enum.Enum):
    """Why a message was refused for good; sent to the DLQ as the ``sluice.reason`` attribute."""

    EMPTY_BODY = "empty_body"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_CHARACTER = "invalid_character"
    UNSUPPORTED_ENVELOPE = "unsupported_envelope"
    MISSING_REQUIRED = "missing_required"
    WRONG_TYPE = "wrong_type"
    VALUE_TOO_LONG = "value_too_long"
    OUT_OF_RANGE = "out_of_range"
    MISSING_DEDUPE_KEY = "missing_dedupe_key"
    REJECTED_BY_WAREHOUSE = "rejected_by_warehouse"
    # An S3 event notification's objects (AppsFlyer Data Locker): the object is gone, the
    # worker may not read it, it is not the gzip it claims to be, its header names none of
    # the mapping's required columns, or it is of a type Sluice does not read (Parquet).
    OBJECT_MISSING = "object_missing"
    ACCESS_DENIED = "access_denied"
    OBJECT_UNREADABLE = "object_unreadable"  # S3 refused the read for another lasting reason
    CORRUPT_OBJECT = "corrupt_object"
    HEADER_MISMATCH = "header_mismatch"
    UNSUPPORTED_OBJECT_TYPE = "unsupported_object_type"
    # One row of an object does not fit the mapping (the detail says why): it goes to the
    # object's error report, the object's other rows load.
    ROW_DOES_NOT_FIT = "row_does_not_fit"
    # A step raised something no rule foresaw: a bug, kept to this one message (the detail
    # names the exception type, never the message's values).
    INTERNAL_ERROR = "internal_error"


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""


class ConfigError(SluiceError):
    """A setting is invalid. The message names the setting and what is allowed."""


class TransientError(SluiceError):
    """The operation may succeed if tried again later."""


class CommitUnknownError(TransientError):
    """The connection was lost while COMMIT was in flight: the load may or may not be in.

    Nothing may be deleted; loading the same batch again is safe because the merge skips
    keys already present.
    """


class PermanentError(SluiceError):
    """Trying again cannot help."""


class MessageError(PermanentError):
    """One message cannot be loaded; it is dead-lettered with ``reason`` and ``detail``."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class SchemaError(PermanentError):
    """The target table is missing or does not match the mapping."""
