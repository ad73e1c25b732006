"""Quantities people type: durations ("14d", "36h", "90s") and rates ("600000/day", "7/s")."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3_600.0,
    "hour": 3_600.0,
    "d": 86_400.0,
    "day": 86_400.0,
}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|min|m|h|d|w)?\s*")
_RATE = re.compile(r"\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*(?:/\s*([a-z]+))?\s*")


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
    """Messages per second from 7, "7/s", "25,000/h" or "600000/day"."""
    if isinstance(raw, int | float):
        return float(raw)
    match = _RATE.fullmatch(raw.lower())
    if not match or (match.group(2) and match.group(2) not in _PER):
        raise ValueError(f"{raw!r} is not a rate such as 7/s, 25000/h, 600000/day")
    value = float(match.group(1).replace(",", "").replace("_", ""))
    return value / _PER[match.group(2) or "s"]
