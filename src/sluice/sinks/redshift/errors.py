"""Redshift's errors, whichever way they arrive, onto Sluice's two families.

The Data API reports a failed statement as text (``DescribeStatement.Error``); a direct
connection raises a driver error whose text is the same server message. Both go through
``classify_message``, so the two connection kinds agree on what is worth retrying.
"""

from __future__ import annotations

import re

from sluice.errors import PermanentError, SchemaError, SluiceError, TransientError
from sluice.sinks.base import RowsRejectedError


class SerializationConflict(TransientError):
    """A concurrent transaction won: Redshift's error 1023 or PostgreSQL's SQLSTATE 40001.

    The transaction was rolled back whole, so running it again at once is safe; the sink
    does so a few times before handing the pipeline a plain ``TransientError``.
    """


# A concurrent writer made this transaction unserialisable; Redshift's documented remedy is
# to retry the whole transaction ("Troubleshooting serializable isolation errors").
_CONFLICT = re.compile(
    r"\b1023\b|serializable isolation violation|could not serialize|deadlock detected"
)
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
# Checked in this order; the first match decides. Server texts, lower-cased.
_TRANSIENT = re.compile(
    r"deadlock"
    r"|connection (?:reset|refused|closed|lost)|terminating connection|server closed"
    r"|out of memory|disk full|too many (?:connections|active)|resource busy"
    r"|slowdown|service unavailable|internal error|query cancelled|timed? ?out"
)
# The data is at fault: the batch is split until the row is found and dead-lettered.
_ROWS = re.compile(
    r"load into table .* failed|stl_load_errors|sys_load_error_detail"
    r"|invalid input syntax|value too long|numeric (?:field )?overflow|out of range"
    r"|invalid (?:json|timestamp|date|digit)|json parsing error|invalid byte sequence"
    r"|multibyte character|null value in column"
)
_SCHEMA = re.compile(
    r"relation .* does not exist|column .* does not exist|table .* does not exist"
    r"|column .* is of type|cannot be cast"
)
# Retrying cannot help: SQL the sink got wrong, or rights the deployment lacks.
_PERMANENT = re.compile(
    r"syntax error|permission denied|access ?denied|not authorized|is not authorized"
    r"|invalid iam role|unauthorized|password authentication failed|does not have permission"
)


def classify_message(text: str, prefix: str) -> SluiceError:
    """An error text from Redshift as the error the pipeline should see."""
    lowered = text.lower()
    message = f"{prefix}: {text}"
    if _CONFLICT.search(lowered):
        return SerializationConflict(message)
    if _TRANSIENT.search(lowered):
        return TransientError(message)
    if _SCHEMA.search(lowered):
        return SchemaError(message)
    if _ROWS.search(lowered):
        return RowsRejectedError(message)
    if _PERMANENT.search(lowered):
        return PermanentError(message)
    # Unknown: retried with backoff (the circuit opens) rather than dropping data.
    return TransientError(message)
