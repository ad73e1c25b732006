"""Envelopes to events: what actually arrives on an SQS queue, unwrapped. Pure.

Recognised bodies:
- a raw JSON event (an object);
- an SNS notification (``Type: Notification``), whose ``Message`` holds the event;
- an S3 event notification (``Records[].eventSource == aws:s3``): refused for now with
  ``unsupported_envelope``, so it reaches the DLQ instead of vanishing;
- the ``s3:TestEvent`` S3 sends when a notification is configured: ignored (deleted).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from sluice.errors import FailureReason, MessageError
from sluice.mapping import TableMapping
from sluice.model import DeadLetter, Decoded, Ignored, ReceivedMessage


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


def unwrap(body: str) -> tuple[dict[str, object], str] | None:
    """The event and its own JSON text, or None for a message with nothing to load."""
    event = parse_event(body)
    text = body
    if _is_sns(event):
        text = str(event["Message"])
        event = parse_event(text)
    if is_s3_test_event(event):
        return None
    if _is_s3_notification(event):
        raise MessageError(
            FailureReason.UNSUPPORTED_ENVELOPE,
            "S3 event notification: loading the objects it names is not supported yet",
        )
    return event, text


def decode_message(message: ReceivedMessage, mapping: TableMapping) -> Decoded:
    """One received message, classified: a row to load, a dead letter, or nothing to do.

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
    except MessageError as exc:
        return DeadLetter(message, exc.reason, exc.detail)
    except RecursionError:
        return DeadLetter(message, FailureReason.INTERNAL_ERROR, "RecursionError: nested too deep")
    except Exception as exc:  # the per-message guard: see the docstring
        return DeadLetter(message, FailureReason.INTERNAL_ERROR, type(exc).__name__)
