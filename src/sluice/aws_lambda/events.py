"""The SQS event source mapping's event in, the partial batch response out. Pure.

An invocation receives ``{"Records": [...]}``, each record the shape AWS documents for SQS
(``messageId``, ``receiptHandle``, ``body``, ``attributes`` with ``ApproximateReceiveCount``
and ``SentTimestamp``, ``messageAttributes`` with lower-case ``stringValue`` /
``binaryValue`` (base64) / ``dataType``, ``eventSource: aws:sqs``, ``eventSourceARN``). Each
becomes the ``ReceivedMessage`` the decoder takes, so the rest of the path is the worker's.

The answer names, by ``messageId``, only the records to be delivered again; the event source
mapping deletes every other one (``FunctionResponseTypes: [ReportBatchItemFailures]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from sluice.errors import PermanentError
from sluice.model import ReceivedMessage
from sluice.sources.sqs_attributes import from_raw

SQS_EVENT_SOURCE = "aws:sqs"


class NotAnSqsEvent(PermanentError):
    """The event is not one the SQS event source mapping sends: the function is wired to
    something else, or a record cannot be named in ``batchItemFailures``. The invocation
    fails whole, so Lambda returns every record to its queue."""


class LambdaContext(Protocol):
    """What the handler reads of Lambda's context object."""

    @property
    def function_name(self) -> str: ...

    @property
    def aws_request_id(self) -> str: ...

    def get_remaining_time_in_millis(self) -> int: ...


def _text(record: Mapping[str, object], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise NotAnSqsEvent(f"an SQS record without a {key}: not an SQS event source mapping event")
    return value


def _whole(value: object, default: int) -> int:
    """SQS sends its numeric attributes as text; anything unreadable keeps the default."""
    try:
        return int(str(value))
    except ValueError:
        return default


def binary_text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _attributes(raw: object) -> dict[str, dict[str, object]]:
    """Lambda's lower-case ``messageAttributes`` in the API's shape, for ``from_raw``."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, dict[str, object]] = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping):
            continue
        data_type = str(value.get("dataType") or value.get("DataType") or "String")
        if data_type.startswith("Binary"):
            binary = value.get("binaryValue", value.get("BinaryValue", ""))
            # base64 text, as Lambda sends it; anything else is not a value to decode
            out[str(name)] = {"DataType": data_type, "BinaryValue": binary_text(binary)}
        else:
            text = value.get("stringValue", value.get("StringValue", ""))
            out[str(name)] = {"DataType": data_type, "StringValue": "" if text is None else text}
    return out


def to_message(record: Mapping[str, object]) -> ReceivedMessage:
    """One record of the event as the message the decoder takes."""
    source = record.get("eventSource", SQS_EVENT_SOURCE)
    if source != SQS_EVENT_SOURCE:
        raise NotAnSqsEvent(f"a record from {source!r}: this handler takes SQS events only")
    system = record.get("attributes")
    system = system if isinstance(system, Mapping) else {}
    body = record.get("body")
    return ReceivedMessage(
        message_id=_text(record, "messageId"),
        receipt_handle=_text(record, "receiptHandle"),
        body=body if isinstance(body, str) else "",
        receive_count=_whole(system.get("ApproximateReceiveCount", 1), 1),
        sent_timestamp_ms=_whole(system.get("SentTimestamp", 0), 0),
        attributes=from_raw(_attributes(record.get("messageAttributes"))),
    )


def messages_of(event: object) -> list[ReceivedMessage]:
    """Every record of ``event``, in order; NotAnSqsEvent if it is not an SQS event."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise NotAnSqsEvent("the event has no Records list: not an SQS event source mapping event")
    messages = []
    for record in records:
        if not isinstance(record, Mapping):
            raise NotAnSqsEvent("a record that is not an object")
        messages.append(to_message(record))
    return messages


def batch_response(failed: Iterable[ReceivedMessage]) -> dict[str, list[dict[str, str]]]:
    """The partial batch response: each failed message once, by its messageId."""
    seen: dict[str, None] = {}
    for message in failed:
        seen.setdefault(message.message_id, None)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in seen]}


def in_order(
    messages: Sequence[ReceivedMessage], failed: Iterable[ReceivedMessage]
) -> list[ReceivedMessage]:
    """``failed`` in the order the event listed them (the response reads better so)."""
    handles = {m.receipt_handle for m in failed}
    return [m for m in messages if m.receipt_handle in handles]
