"""The canonical form of an event, for its dedupe key: equal for the same event however it was
spaced or its keys ordered, different for events that differ in any value. Pure.

orjson reads a number it cannot hold exactly as a double (an integer past 64 bits, a decimal
with more than 15-17 significant digits) as the nearest double, so two events differing only in
``123456789012345678901234567890`` and ``...891`` parse to equal dicts. Most events have no such
number, and for them the key stays what it always was: SHA-256 of ``orjson.dumps`` with sorted
keys (keys already in a warehouse keep matching their redeliveries across an upgrade). An event
that holds a number orjson could round, or that nests deeper than orjson writes (254 levels,
though it reads 1,024), is read a second time by ``exact_tree``, which keeps every number as
its exact value, and keyed in a separate domain so the two forms can never collide.

Which events need that is decided from what orjson already parsed: it reads every integer it
can hold exactly as an int, so only an event holding a float can hide a rounded number, and
only then is its text tokenised (a tree walk costs a few microseconds; a regex over every
event's text, strings included, cost more than the decode itself).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

# A number with 16 or more digits, or an exponent of 3 or more digits: the only numbers a
# double may not hold exactly (any decimal of at most 15 significant digits and an exponent
# within +-99 survives the trip to a double and back). In an event (an object) every number
# follows ':', '[' or ',' and maybe blanks, so this finds every such number; it may also find
# one inside a string, which costs an exact reading and is never wrong.
_INEXACT_NUMBER = re.compile(r"[:,\[]\s*-?(?:(?:\d\.?){16,}|[\d.]+[eE][+-]?\d{3,})")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
      | (?P<number>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<literal>true|false|null)
      | (?P<punct>[{}\[\]:,])
    )""",
    re.VERBOSE | re.DOTALL,
)
_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?")
_EXACT_DOMAIN = b"sluice-exact-v1\x1f"


class ExactNumber(str):
    """A JSON number as its exact value, written ``[-]DIGITSeEXP`` with no trailing zeros."""

    __slots__ = ()


def exact_number(piece: str) -> ExactNumber:
    """Exact canonical text of a JSON number token, computed without any decimal context (so
    no rounding and no overflow, whatever the exponent): 1, 1.0, 10e-1 are all ``1e0``."""
    match = _NUMBER.fullmatch(piece)
    if match is None:
        raise ValueError("not a JSON number")
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    digits = (whole + fraction).lstrip("0")
    power = int(exponent or "0") - len(fraction)
    stripped = digits.rstrip("0")
    power += len(digits) - len(stripped)
    if not stripped:
        return ExactNumber("0")
    return ExactNumber(f"{sign}{stripped}e{power}")


def holds_float(value: object) -> bool:
    """Whether a parsed JSON value holds a float anywhere (a loop: it may nest 1,024 deep)."""
    # Exact type checks (JSON holds no subclasses): this runs once per message.
    if type(value) is not dict and type(value) is not list:
        return type(value) is float
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        children = item.values() if type(item) is dict else item
        for child in children:
            kind = type(child)
            if kind is float:
                return True
            if kind is dict or kind is list:
                pending.append(child)
    return False


def may_be_inexact(text: str) -> bool:
    """Whether the JSON object ``text`` may hold a number a double cannot represent exactly."""
    return _INEXACT_NUMBER.search(text) is not None


def exact_tree(text: str) -> object:
    """Parse JSON ``text`` (already accepted by orjson) keeping numbers exact, without
    recursion: dicts, lists, str, bool, None and ExactNumber. A repeated key keeps its last
    value, as orjson does."""
    root: list[object] = []
    # One frame per open container: [the container, the key waiting for its value].
    frames: list[list[object]] = [[root, None]]
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        piece = match.group(0).strip()
        frame = frames[-1]
        if kind == "punct":
            if piece in "{[":
                container: object = {} if piece == "{" else []
                _attach(frame, container)
                frames.append([container, None])
            elif piece in "}]":
                frames.pop()
            continue
        if kind == "string":
            value: object = orjson.loads(piece)
            if isinstance(frame[0], dict) and frame[1] is None:
                frame[1] = value  # a string where a key belongs: the key
                continue
        elif kind == "number":
            value = exact_number(piece)
        else:
            value = _LITERALS[piece]
        _attach(frame, value)
    return root[0]


_LITERALS: dict[str, object] = {"true": True, "false": False, "null": None}


def _attach(frame: list[object], value: object) -> None:
    container, key = frame
    if isinstance(container, dict):
        container[key] = value
        frame[1] = None
    elif isinstance(container, list):
        container.append(value)


def canonical_bytes(value: object) -> bytes:
    """``value`` (from ``exact_tree``) as bytes, keys sorted, without recursion."""
    out: list[bytes] = []
    # Work items: a value to write, or literal bytes already decided.
    work: list[object] = [value]
    while work:
        item = work.pop()
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, ExactNumber):
            out.append(item.encode())
        elif isinstance(item, dict):
            parts: list[object] = [b"{"]
            for i, key in enumerate(sorted(item)):
                if i:
                    parts.append(b",")
                parts.extend((orjson.dumps(key), b":", item[key]))
            parts.append(b"}")
            work.extend(reversed(parts))
        elif isinstance(item, list):
            parts = [b"["]
            for i, element in enumerate(item):
                if i:
                    parts.append(b",")
                parts.append(element)
            parts.append(b"]")
            work.extend(reversed(parts))
        else:  # str, bool, None
            out.append(orjson.dumps(item))
    return b"".join(out)


def event_key(event: Mapping[str, object], text: str) -> str:
    """SHA-256 of the canonical form of the event parsed from ``text``."""
    if not (holds_float(event) and may_be_inexact(text)):
        try:
            return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except orjson.JSONEncodeError:
            pass  # nested deeper than orjson writes: the exact form has no depth limit
    return hashlib.sha256(_EXACT_DOMAIN + canonical_bytes(exact_tree(text))).hexdigest()


def value_bytes(value: object) -> bytes:
    """One dedupe-path value as bytes: orjson's form when it is exact, else the exact form."""
    if isinstance(value, ExactNumber):
        return _EXACT_DOMAIN + value.encode()
    if isinstance(value, dict | list):
        return _EXACT_DOMAIN + canonical_bytes(value)
    return orjson.dumps(value)
