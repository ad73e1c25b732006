"""The stats line existing dashboards parse: exact key names, types, and values."""

from __future__ import annotations

from collections import Counter

from sluice.errors import FailureReason
from sluice.observe.stats import StatsLine, WorkerCounters

LEGACY_KEYS = {
    "workerId",
    "messagesProcessed",
    "messagesFailed",
    "uptimeSeconds",
    "throughputPerSecond",
    "throughputPerHour",
    "throughputPerDay",
}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counters(**kwargs: object) -> WorkerCounters:
    return WorkerCounters(**kwargs)  # type: ignore[arg-type]


def test_keys_types_and_values() -> None:
    clock = FakeClock(500.0)
    line = StatsLine("worker-7", clock, started_at=500.0)
    c = counters(
        inserted=80,
        duplicates_in_batch=6,
        duplicates_in_target=4,
        dead_lettered=Counter({FailureReason.INVALID_JSON: 2, FailureReason.WRONG_TYPE: 1}),
        left_to_redrive=Counter({FailureReason.MISSING_REQUIRED: 3}),
        received=99,
    )
    clock.now = 560.0  # one minute later
    out = line.render(c, held=5)
    assert set(out) >= LEGACY_KEYS
    assert out["workerId"] == "worker-7"
    assert out["messagesProcessed"] == 90  # inserted + duplicates
    assert out["messagesFailed"] == 6  # dead-lettered + left to redrive
    assert out["uptimeSeconds"] == 60
    assert out["throughputPerSecond"] == "1.50"
    assert out["throughputPerHour"] == 5400
    assert out["throughputPerDay"] == 129_600
    assert type(out["uptimeSeconds"]) is int
    assert type(out["throughputPerHour"]) is int
    assert type(out["throughputPerDay"]) is int
    assert out["messagesHeld"] == 5
    assert out["messagesReceived"] == 99
    assert out["deadLettered"] == {"invalid_json": 2, "wrong_type": 1}


def test_rates_are_averages_since_start_with_two_decimals() -> None:
    clock = FakeClock(0.0)
    line = StatsLine("w", clock, started_at=0.0)
    clock.now = 30.5
    out = line.render(counters(inserted=100), held=0)
    assert out["uptimeSeconds"] == 30  # truncated to whole seconds
    assert out["throughputPerSecond"] == "3.28"  # 100 / 30.5 = 3.2786...
    assert out["throughputPerHour"] == 11_803  # int(3.2786... * 3600)
    assert out["throughputPerDay"] == 283_278


def test_second_render_keeps_the_average_and_reports_the_interval() -> None:
    clock = FakeClock(0.0)
    line = StatsLine("w", clock, started_at=0.0)
    clock.now = 10.0
    first = line.render(counters(inserted=10), held=0)
    assert first["intervalPerSecond"] == 1.0
    clock.now = 20.0
    second = line.render(counters(inserted=40), held=0)
    assert second["throughputPerSecond"] == "2.00"  # 40 over 20 s since start
    assert second["intervalPerSecond"] == 3.0  # 30 over the last 10 s


def test_nothing_processed_at_start_is_zero_not_an_error() -> None:
    clock = FakeClock(42.0)
    out = StatsLine("w", clock, started_at=42.0).render(WorkerCounters(), held=0)
    assert out["messagesProcessed"] == 0
    assert out["messagesFailed"] == 0
    assert out["uptimeSeconds"] == 0
    assert out["throughputPerSecond"] == "0.00"
    assert out["throughputPerHour"] == 0
    assert out["throughputPerDay"] == 0


def test_counters_aggregates() -> None:
    c = counters(
        inserted=3,
        duplicates_in_batch=2,
        duplicates_in_target=1,
        dead_lettered=Counter({FailureReason.EMPTY_BODY: 4}),
        left_to_redrive=Counter({FailureReason.REJECTED_BY_WAREHOUSE: 5}),
    )
    assert c.duplicates == 3
    assert c.processed == 6
    assert c.failed == 9
