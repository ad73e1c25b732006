"""Synthetic AppsFlyer events for the demo, the load generator and the tests. Pure.

Deterministic for a seed. Malformed messages come in kinds whose dead-letter reason is
known in advance, so a run can be reconciled exactly.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from sluice.errors import FailureReason

EVENT_NAMES = (
    "install",
    "af_purchase",
    "af_login",
    "af_add_to_cart",
    "af_level_achieved",
    "re-engagement",
    "af_subscribe",
    "af_tutorial_completion",
)
MEDIA_SOURCES = (
    "organic",
    "googleadwords_int",
    "Facebook Ads",
    "tiktokglobal_int",
    "Apple Search Ads",
    "snapchat_int",
    "unityads_int",
)
COUNTRIES = ("US", "IN", "GB", "DE", "BR", "JP", "ID", "FR")
CURRENCIES = ("USD", "EUR", "INR", "GBP")
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)

# Each malformed kind, and the reason Sluice must give for it.
MALFORMED_KINDS: tuple[tuple[str, FailureReason], ...] = (
    ("truncated_json", FailureReason.INVALID_JSON),
    ("json_array", FailureReason.NOT_AN_OBJECT),
    ("missing_event_name", FailureReason.MISSING_REQUIRED),
    ("bad_event_time", FailureReason.WRONG_TYPE),
    ("bad_revenue", FailureReason.WRONG_TYPE),
    ("oversized_id", FailureReason.VALUE_TOO_LONG),
)


@dataclass(frozen=True, slots=True)
class SyntheticMessage:
    body: str
    valid: bool
    duplicate_of: int | None = None  # index of the message this one repeats
    expected_reason: FailureReason | None = None


def appsflyer_event(rng: random.Random, index: int) -> dict[str, object]:
    """One plausible AppsFlyer push-API event; ``index`` makes it unique."""
    ios = rng.random() < 0.45
    install = EPOCH + timedelta(seconds=rng.randrange(0, 25 * 86400))
    event_time = install + timedelta(milliseconds=rng.randrange(0, 5 * 86400 * 1000))
    name = EVENT_NAMES[index % len(EVENT_NAMES)]
    revenue = round(rng.uniform(0.5, 99.0), 2) if name in ("af_purchase", "af_subscribe") else None
    currency = rng.choice(CURRENCIES)
    return {
        "appsflyer_id": f"{1700000000000 + index}-{rng.randrange(10**7):07d}",
        "event_name": name,
        "event_time": event_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "event_value": orjson.dumps(
            {"af_revenue": revenue, "af_content_id": f"sku-{index % 97}"}
        ).decode()
        if revenue is not None
        else "",
        "event_revenue": None if revenue is None else f"{revenue:.2f}",
        "event_revenue_currency": currency if revenue is not None else None,
        "event_revenue_usd": None if revenue is None else round(revenue * 1.07, 4),
        "media_source": rng.choice(MEDIA_SOURCES),
        "campaign": f"campaign_{rng.randrange(40)}",
        "af_channel": rng.choice(("", "YouTube", "Instagram", "Search")),
        "platform": "ios" if ios else "android",
        "app_id": "id1234567890" if ios else "com.example.game",
        "customer_user_id": f"user-{rng.randrange(10**9)}",
        "idfa": str(uuid.UUID(int=rng.getrandbits(128))).upper() if ios else None,
        "idfv": str(uuid.UUID(int=rng.getrandbits(128))).upper() if ios else None,
        "advertising_id": None if ios else str(uuid.UUID(int=rng.getrandbits(128))),
        "country_code": rng.choice(COUNTRIES),
        "install_time": install.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "os_version": f"{rng.randrange(12, 18)}.{rng.randrange(0, 6)}",
        "sdk_version": "v6.15.2",
        "is_retargeting": rng.choice(("false", "true", False)),
        "is_primary_attribution": rng.choice((True, "true")),
        "device_model": rng.choice(("iPhone15,2", "SM-S918B", "Pixel 8")),
        "af_sub1": None,
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
    }


def malformed(kind: str, event: dict[str, object]) -> str:
    if kind == "truncated_json":
        return orjson.dumps(event).decode()[:-7]
    if kind == "json_array":
        return orjson.dumps([event]).decode()
    broken = dict(event)
    if kind == "missing_event_name":
        del broken["event_name"]
    elif kind == "bad_event_time":
        broken["event_time"] = "yesterday at noon"
    elif kind == "bad_revenue":
        broken["event_revenue"] = {"amount": "1.99"}
    elif kind == "oversized_id":
        broken["appsflyer_id"] = "x" * 300
    return orjson.dumps(broken).decode()


def synthetic_stream(
    count: int, *, malformed_ratio: float = 0.01, duplicate_ratio: float = 0.02, seed: int = 7
) -> Iterator[SyntheticMessage]:
    """``count`` messages: about ``malformed_ratio`` bad, ``duplicate_ratio`` exact repeats."""
    rng = random.Random(seed)
    valid_sent: list[int] = []
    bodies: dict[int, str] = {}
    for index in range(count):
        roll = rng.random()
        if roll < malformed_ratio:
            kind, reason = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
            yield SyntheticMessage(
                malformed(kind, appsflyer_event(rng, index)), False, expected_reason=reason
            )
        elif roll < malformed_ratio + duplicate_ratio and valid_sent:
            original = valid_sent[rng.randrange(len(valid_sent))]
            yield SyntheticMessage(bodies[original], True, duplicate_of=original)
        else:
            body = orjson.dumps(appsflyer_event(rng, index)).decode()
            bodies[index] = body
            valid_sent.append(index)
            yield SyntheticMessage(body, True)
