"""A CSV record of an object as a row of the target table, through the table mapping. Pure.

A record is mapped as the JSON object ``{header: value}`` would be: the mapping's paths name
headers (``path = ["Event Time"]``), ``raw_event`` holds that object, and the dedupe key is
the mapping's (by default the SHA-256 of the object's canonical form). So the key depends on
the row's content only, not on where it was read: an object read twice (a redelivered or
duplicate notification, a crash half-way), or an hour's folder that AppsFlyer rewrites with
the same rows under new names, adds nothing; and a row from the error report, fixed and sent
to the queue as JSON, gets the key it would have had. docs/data-locker.md says why a
position key (bucket, key, ETag, row number) was not chosen.

Each row travels as its own ``ReceivedMessage`` (id ``<message id>#<object>:<row>``, body the
row's JSON): a row the warehouse refuses is isolated by the loader's bisection and reported
alone, and its dead letter carries the row, never the notification.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from sluice.errors import FailureReason, MessageError
from sluice.mapping import TableMapping
from sluice.model import DeadLetter, MappedRow, ObjectRef, ReceivedMessage
from sluice.objects.csvstream import BadRecord, Record


def header_problem(mapping: TableMapping, header: Iterable[str]) -> str | None:
    """Why an object's header cannot feed ``mapping``, or None: every required column's
    header is present, and at least one mapped column's is."""
    names = set(header)
    heads = [(column.name, column.path[0], column.nullable) for column in mapping.columns]
    missing = [
        f"{path!r} ({name})" for name, path, nullable in heads if not nullable and path not in names
    ]
    if missing:
        return "the header lacks the required column(s) " + ", ".join(missing)
    if not any(path in names for _, path, _ in heads):
        return "the header names none of the mapping's columns (is this the right mapping?)"
    return None


def row_message(
    notification: ReceivedMessage, index: int, ref: ObjectRef, number: int, body: str
) -> ReceivedMessage:
    """The stand-in message one row travels as (see the module's docstring)."""
    name = f"{notification.message_id}#{index}:{number}"
    return ReceivedMessage(
        name,
        name,
        body,
        notification.receive_count,
        notification.sent_timestamp_ms,
        (("object_row", "Number", str(number)), ("object_url", "String", ref.url)),
    )


def map_record(
    mapping: TableMapping,
    notification: ReceivedMessage,
    index: int,
    ref: ObjectRef,
    parsed: Record | BadRecord,
) -> MappedRow | DeadLetter:
    """One record as a row, or as the error report's entry (reason ``row_does_not_fit``)."""
    if isinstance(parsed, BadRecord):
        body = orjson.dumps(list(parsed.fields)).decode()
        message = row_message(notification, index, ref, parsed.number, body)
        return DeadLetter(
            message, FailureReason.ROW_DOES_NOT_FIT, f"{ref.url} row {parsed.number}: {parsed.why}"
        )
    body = orjson.dumps(parsed.fields).decode()
    message = row_message(notification, index, ref, parsed.number, body)
    try:
        return mapping.map_event(parsed.fields, body, message)
    except MessageError as exc:
        detail = f"{ref.url} row {parsed.number}: {exc.reason.value}: {exc.detail}"
        return DeadLetter(message, FailureReason.ROW_DOES_NOT_FIT, detail)
