"""Value converters: one JSON value into one column value, or a MessageError.

Lenient where producers are known to vary (AppsFlyer sends booleans as "true", numbers as
strings, event_value as a JSON string or an object, "" for absent) and strict where a wrong
value would corrupt the table. Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import orjson

from sluice.errors import FailureReason, MessageError

DECIMAL_PRECISION = 20
DECIMAL_SCALE = 6
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_DECIMAL_DIGITS_BEFORE_POINT = DECIMAL_PRECISION - DECIMAL_SCALE
_ZERO = Decimal(0).quantize(_QUANTUM)
_INT64 = (-(2**63), 2**63 - 1)


class ColumnType(enum.Enum):
    TEXT = "text"
    BIGINT = "bigint"
    DOUBLE = "double"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"


Converter = Callable[[object, str], object]  # (value, column name) -> column value


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (dict, "an object"),
    (list, "an array"),
)


def kind_of(value: object) -> str:
    """What a JSON value is, in words: what a detail may say about it."""
    return next((words for kind, words in _KINDS if isinstance(value, kind)), "null")


def _wrong(column: str, expected: str, value: object) -> MessageError:
    # The detail names the column and both types, never the value: details reach info-level
    # logs and the DLQ's attributes, and the value is in the dead letter's body anyway.
    return MessageError(
        FailureReason.WRONG_TYPE, f"{column}: expected {expected}, got {kind_of(value)}"
    )


def _out_of_range(column: str, what: str) -> MessageError:
    return MessageError(FailureReason.OUT_OF_RANGE, f"{column}: {what}")


def to_text(max_bytes: int | None) -> Converter:
    def convert(value: object, column: str) -> object:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        else:
            raise _wrong(column, "a string", value)
        if max_bytes is not None and len(text) * 4 > max_bytes:
            size = len(text.encode("utf-8"))
            if size > max_bytes:
                raise MessageError(
                    FailureReason.VALUE_TOO_LONG,
                    f"{column}: {size} UTF-8 bytes, the column holds {max_bytes}",
                )
        return text

    return convert


def to_bigint(value: object, column: str) -> object:
    if isinstance(value, bool):
        raise _wrong(column, "an integer", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 20 and text.lstrip("+-").isdigit():
            # int() refuses over 4,300 digits; anything past 20 is past 64 bits anyway.
            raise _out_of_range(column, "the integer exceeds 64 bits")
        try:
            number = int(text)
        except ValueError:
            raise _wrong(column, "an integer", value) from None
    else:
        raise _wrong(column, "an integer", value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise _out_of_range(column, "the integer exceeds 64 bits")
    return number


def to_double(value: object, column: str) -> object:
    if isinstance(value, bool):
        raise _wrong(column, "a number", value)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _wrong(column, "a number", value) from None
    else:
        raise _wrong(column, "a number", value)
    if not math.isfinite(number):
        raise _out_of_range(column, "the number is not finite")
    return number


def to_decimal(value: object, column: str) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _wrong(column, "a decimal number", value)
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise _wrong(column, "a decimal number", value) from None
    # Checked on the exponent before any arithmetic: abs() or quantize() of 1e1000000 would
    # raise decimal.Overflow, and of 1e-1000000 work through a million digits. Checked again
    # after rounding, which can carry 99999999999999.9999999 up to fifteen digits.
    if number.is_zero() or (number.is_finite() and number.adjusted() < -DECIMAL_SCALE - 1):
        return _ZERO  # rounds to 0 at this scale, whatever its exponent
    if number.is_finite() and number.adjusted() < _DECIMAL_DIGITS_BEFORE_POINT:
        rounded = number.quantize(_QUANTUM)
        if not rounded or rounded.adjusted() < _DECIMAL_DIGITS_BEFORE_POINT:
            return rounded
    raise _out_of_range(
        column, f"the number does not fit DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})"
    )


_TRUE_WORDS = {"true", "1", "yes", "y", "t"}
_FALSE_WORDS = {"false", "0", "no", "n", "f"}


def to_boolean(value: object, column: str) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE_WORDS:
            return True
        if lowered in _FALSE_WORDS:
            return False
    raise _wrong(column, "a boolean", value)


_EPOCH_MS_THRESHOLD = 100_000_000_000  # numbers above this are epoch milliseconds


def to_timestamp(value: object, column: str) -> object:
    """UTC, stored without a zone. AppsFlyer sends ``yyyy-mm-dd hh:mm:ss.sss``."""
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _wrong(column, "a timestamp like 2024-05-01 12:34:56.789", value) from None
        if stamp.tzinfo is not None:
            try:
                stamp = stamp.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 falls before year 1
                raise _out_of_range(column, "the timestamp is outside years 1-9999") from None
        return stamp
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = value / 1000 if value > _EPOCH_MS_THRESHOLD else value
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            raise _out_of_range(column, "the number is not a valid epoch time") from None
    raise _wrong(column, "a timestamp", value)


def to_json(value: object, column: str) -> object:
    """Objects and arrays as JSON text; a string holding JSON is unwrapped once."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return orjson.dumps(value).decode()
            return stripped
        return orjson.dumps(value).decode()
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        raise _wrong(column, "JSON", value) from None


def converter_for(kind: ColumnType, max_bytes: int | None) -> Converter:
    if kind is ColumnType.TEXT:
        return to_text(max_bytes)
    table: dict[ColumnType, Converter] = {
        ColumnType.BIGINT: to_bigint,
        ColumnType.DOUBLE: to_double,
        ColumnType.DECIMAL: to_decimal,
        ColumnType.BOOLEAN: to_boolean,
        ColumnType.TIMESTAMP: to_timestamp,
        ColumnType.JSON: to_json,
    }
    return table[kind]
