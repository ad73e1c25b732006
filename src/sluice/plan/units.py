"""Quantities people type: counts ("2.8M", "600k"), durations ("14d", "36h", "90s") and rates
("600k/day", "7/s", "36000/h"), in the notation the ops guide itself uses."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3_600.0,
    "hr": 3_600.0,
    "hour": 3_600.0,
    "d": 86_400.0,
    "day": 86_400.0,
    "w": 604_800.0,
    "week": 604_800.0,
}
# Decimal multipliers, as written in the guide (2.8M backlog, 600k a day): never binary.
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}
_NUMBER = r"([0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)\s*([kmb]?)"
_COUNT = re.compile(rf"\s*{_NUMBER}\s*")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|min|m|h|d|w)?\s*")
_RATE = re.compile(rf"\s*{_NUMBER}\s*(?:/\s*([a-z]+))?\s*")
_LARGEST = Decimal(10) ** 18  # far beyond any queue; keeps the arithmetic in floats' range
_COUNT_EXAMPLES = "2800000, 2,800,000, 2.8M, 600k or 1.5B"
_RATE_EXAMPLES = "7/s, 36000/h, 600k/day or 1.2M/d"


def _number(digits: str, suffix: str) -> Decimal:
    """Exact, so that 2.8M is 2,800,000 and not 2,799,999.9999999995."""
    if "," in digits and not re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})*(?:\.[0-9]+)?", digits):
        # "2,80" is a typo or a decimal comma, not two hundred and eighty.
        raise ValueError("commas must group thousands")
    value = Decimal(digits.replace(",", "").replace("_", "")) * _SUFFIX[suffix]
    if value > _LARGEST:
        raise ValueError("too large")
    return value


def parse_count(raw: str | int) -> int:
    """A whole number of messages from 2800000, "2,800,000", "2.8M", "600k" or "1.5B"."""
    if isinstance(raw, int):
        if raw < 0:
            raise ValueError("must not be negative")
        return raw
    match = _COUNT.fullmatch(raw.lower())
    try:
        if not match:
            raise ValueError("not a count")
        value = _number(match.group(1), match.group(2))
    except ValueError:
        raise ValueError(f"{raw!r} is not a count such as {_COUNT_EXAMPLES}") from None
    if value != value.to_integral_value():
        raise ValueError(f"{raw!r} is not a whole number of messages")
    return int(value)


def parse_duration(raw: str | float) -> float:
    """Seconds from 90, "90s", "15m", "36h", "14d" or "2w"."""
    if isinstance(raw, int | float):
        if raw < 0:
            raise ValueError("must not be negative")
        return float(raw)
    match = _DURATION.fullmatch(raw.lower())
    if not match:
        raise ValueError(f"{raw!r} is not a duration such as 90s, 15m, 36h, 14d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def parse_rate(raw: str | float) -> float:
    """Messages per second from 7, "7/s", "25,000/h", "36000/h", "600k/day" or "1.2M/d"."""
    if isinstance(raw, int | float):
        if raw < 0 or not math.isfinite(raw):
            raise ValueError("must be a finite number, not negative")
        return float(raw)
    match = _RATE.fullmatch(raw.lower())
    try:
        if not match or (match.group(3) and match.group(3) not in _PER):
            raise ValueError("not a rate")
        value = _number(match.group(1), match.group(2))
    except ValueError:
        raise ValueError(f"{raw!r} is not a rate such as {_RATE_EXAMPLES}") from None
    return float(value) / _PER[match.group(3) or "s"]
