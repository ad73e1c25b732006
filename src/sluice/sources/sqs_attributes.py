"""SQS message attributes: read them from either client, size them as SQS does, group sends.

SQS counts a message's size as its body plus, for each attribute, the bytes of its name,
its DataType and its value; the same bound (1 MiB) applies to the sum over a
SendMessageBatch. fauxqs counts a Binary value by its base64 text, AWS by its bytes: the
base64 length is the larger, so sizing by it is safe against both.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sluice.model import ReceivedMessage

BATCH_LIMIT = 10  # SQS batch APIs take at most ten entries
SEND_BATCH_BYTES = 1024 * 1024  # and at most 1 MiB of payload per SendMessageBatch
MAX_ATTRIBUTES = 10  # message attributes SQS accepts on one message
SLUICE_PREFIX = "sluice."

Attribute = tuple[str, str, str | bytes]
Attributes = tuple[Attribute, ...]
T = TypeVar("T")


def from_raw(raw: Mapping[str, Any] | None) -> Attributes:
    """MessageAttributes as received. Binary values arrive as bytes from botocore and as
    base64 text from the wire client: both become bytes, so both clients agree."""
    if not raw:
        return ()
    out: list[Attribute] = []
    for name, value in raw.items():
        data_type = str(value.get("DataType", "String"))
        if data_type.startswith("Binary"):
            binary = value.get("BinaryValue", b"")
            if isinstance(binary, str):
                try:
                    binary = base64.b64decode(binary, validate=True)
                except (binascii.Error, ValueError):
                    binary = binary.encode()
            out.append((str(name), data_type, bytes(binary)))
        else:
            out.append((str(name), data_type, str(value.get("StringValue", ""))))
    return tuple(sorted(out))


def to_wire(attributes: Sequence[Attribute]) -> dict[str, dict[str, Any]]:
    """The MessageAttributes parameter of a send (the wire client base64-encodes bytes)."""
    wire: dict[str, dict[str, Any]] = {}
    for name, data_type, value in attributes:
        if isinstance(value, bytes):
            wire[name] = {"DataType": data_type, "BinaryValue": value}
        else:
            wire[name] = {"DataType": data_type, "StringValue": value}
    return wire


def producer_attributes(message: ReceivedMessage) -> Attributes:
    """The attributes the producer sent: Sluice's own ``sluice.*`` ones left out."""
    return tuple(a for a in message.attributes if not a[0].startswith(SLUICE_PREFIX))


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    size = len(name.encode()) + len(str(value.get("DataType", "")).encode())
    if "StringValue" in value:
        size += len(str(value["StringValue"]).encode())
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        raw = binary if isinstance(binary, bytes) else str(binary).encode()
        size += 4 * ((len(raw) + 2) // 3) if isinstance(binary, bytes) else len(raw)
    return size


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes SQS counts against MaximumMessageSize and the batch bound."""
    return len(body.encode()) + sum(attribute_size(k, v) for k, v in attributes.items())


def size_bounded_groups(
    items: Sequence[T], cost: Callable[[T], int], limit: int = SEND_BATCH_BYTES
) -> list[list[T]]:
    """Groups of at most ten whose summed cost stays within ``limit``; an item too large for
    any group goes alone (its send then fails for that entry only)."""
    groups: list[list[T]] = []
    size = 0
    for item in items:
        weight = cost(item)
        if not groups or len(groups[-1]) == BATCH_LIMIT or size + weight > limit:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += weight
    return groups
