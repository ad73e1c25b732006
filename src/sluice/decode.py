"""Envelopes to events: what actually arrives on an SQS queue, unwrapped. Pure.

Recognised bodies:
- a raw JSON event (an object);
- an SNS notification (``Type: Notification``), whose ``Message`` holds the event;
- an S3 event notification (``Records[].eventSource == aws:s3``), raw or inside an SNS
  envelope: the objects it names hold the rows (AppsFlyer Data Locker), so it decodes to
  ``ObjectsAnnounced``; markers (``_SUCCESS``), removals and other types are listed as
  skipped; gzip CSV and Parquet objects are loadable;
- the ``s3:TestEvent`` S3 sends when a notification is configured: ignored (deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_plus

import orjson

from sluice.errors import FailureReason, MessageError
from sluice.mapping import TableMapping
from sluice.model import (
    DeadLetter,
    Decoded,
    Ignored,
    ObjectRef,
    ObjectsAnnounced,
    ReceivedMessage,
)
from sluice.objects.layout import ObjectKind, kind_of_key


def parse_event(text: str) -> dict[str, object]:
    if not text.strip():
        raise MessageError(FailureReason.EMPTY_BODY, "the message body is empty")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MessageError(FailureReason.INVALID_JSON, str(exc)) from None
    if not isinstance(value, dict):
        raise MessageError(
            FailureReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(value).__name__}"
        )
    # PostgreSQL and Redshift cannot store U+0000 in text or JSON: refuse it here, for this
    # message alone, rather than fail the COPY of a whole batch. The cheap substring test
    # keeps the deep scan off the hot path.
    if "\\u0000" in text and _contains_nul(value):
        raise MessageError(FailureReason.INVALID_CHARACTER, "a string holds U+0000 (NUL)")
    return value


def _contains_nul(value: object) -> bool:
    """Whether any key or string in ``value`` holds U+0000. A loop, not recursion: a message
    may nest 1,024 levels, deeper than Python's recursion limit allows."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _is_sns(value: Mapping[str, object]) -> bool:
    return (
        value.get("Type") == "Notification"
        and isinstance(value.get("Message"), str)
        and ("TopicArn" in value)
    )


def _is_s3_notification(value: Mapping[str, object]) -> bool:
    records = value.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and records[0].get("eventSource") == "aws:s3"
    )


def is_s3_test_event(value: Mapping[str, object]) -> bool:
    return value.get("Event") == "s3:TestEvent"


class S3Notification(MessageError):
    """Raised by ``unwrap`` for an S3 event notification: its rows are in objects, not in
    the message. Carries the parsed notification for ``objects_announced``; a caller that
    cannot load objects sees a ``MessageError`` (``unsupported_envelope``)."""

    def __init__(self, event: dict[str, object]) -> None:
        super().__init__(
            FailureReason.UNSUPPORTED_ENVELOPE,
            "S3 event notification: its rows are in the objects it names",
        )
        self.event = event


def unwrap(body: str) -> tuple[dict[str, object], str] | None:
    """The event and its own JSON text, or None for a message with nothing to load.

    Raises ``S3Notification`` for an S3 event notification (its rows live in the objects it
    names) and ``MessageError`` for a body that is not an event.
    """
    event = parse_event(body)
    text = body
    if _is_sns(event):
        text = str(event["Message"])
        event = parse_event(text)
    if is_s3_test_event(event):
        return None
    if _is_s3_notification(event):
        raise S3Notification(event)
    return event, text


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _object_of(record: object, index: int) -> tuple[ObjectRef, str]:
    """One notification record as (object, event name)."""
    s3 = record.get("s3") if isinstance(record, dict) else None
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    found = s3.get("object") if isinstance(s3, dict) else None
    name = bucket.get("name") if isinstance(bucket, dict) else None
    key = found.get("key") if isinstance(found, dict) else None
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise MessageError(
            FailureReason.UNSUPPORTED_ENVELOPE,
            f"S3 event notification record {index} lacks s3.bucket.name or s3.object.key",
        )
    assert isinstance(found, dict)  # key was read from it
    size = found.get("size")
    ref = ObjectRef(
        bucket=name,
        key=unquote_plus(key),  # S3 sends keys URL-encoded, spaces as '+'
        size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
        etag=_text(found.get("eTag")).strip('"'),
        version_id=_text(found.get("versionId")),
    )
    event_name = record.get("eventName") if isinstance(record, dict) else None
    return ref, _text(event_name)


def objects_announced(event: Mapping[str, object], message: ReceivedMessage) -> ObjectsAnnounced:
    """The objects an S3 event notification names: to load, or skipped with why. Pure."""
    records = event.get("Records")
    assert isinstance(records, list)  # checked by _is_s3_notification
    loadable: list[ObjectRef] = []
    skipped: list[tuple[ObjectRef, str]] = []
    for index, record in enumerate(records):
        ref, event_name = _object_of(record, index)
        if not event_name.startswith("ObjectCreated:"):
            skipped.append((ref, f"{event_name or 'an event'} creates no object"))
            continue
        kind = kind_of_key(ref.key)
        if kind in (ObjectKind.CSV, ObjectKind.PARQUET):
            loadable.append(ref)
        else:
            skipped.append((ref, f"a {kind.value} object, nothing to load"))
    return ObjectsAnnounced(message, tuple(loadable), tuple(skipped))


def _announced(
    event: Mapping[str, object], message: ReceivedMessage
) -> ObjectsAnnounced | DeadLetter:
    try:
        return objects_announced(event, message)
    except MessageError as exc:
        return DeadLetter(message, exc.reason, exc.detail)


def decode_message(message: ReceivedMessage, mapping: TableMapping) -> Decoded | ObjectsAnnounced:
    """One received message, classified: a row to load, a dead letter, nothing to do, or
    objects to load (an S3 event notification).

    Never raises: whatever one message holds can only fail that message. A step that raises
    something no rule foresaw is a bug, and the message becomes a dead letter with reason
    ``internal_error`` naming the exception type (never its text, which may quote values).
    """
    try:
        unwrapped = unwrap(message.body)
        if unwrapped is None:
            return Ignored(message, "s3:TestEvent")
        event, text = unwrapped
        return mapping.map_event(event, text, message)
    except S3Notification as notification:
        return _announced(notification.event, message)
    except MessageError as exc:
        return DeadLetter(message, exc.reason, exc.detail)
    except RecursionError:
        return DeadLetter(message, FailureReason.INTERNAL_ERROR, "RecursionError: nested too deep")
    except Exception as exc:  # the per-message guard: see the docstring
        return DeadLetter(message, FailureReason.INTERNAL_ERROR, type(exc).__name__)
