"""Flush policy, batches, backoff and the circuit breaker, on a clock the test moves."""

from __future__ import annotations

import pytest

from sluice.batching import Batch, FlushCause, FlushPolicy
from sluice.errors import FailureReason
from sluice.model import CircuitState, DeadLetter, Ignored, MappedRow, ReceivedMessage
from sluice.policies import CircuitBreaker, ExponentialBackoff


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def received(n: int, body: str = "x" * 10) -> ReceivedMessage:
    return ReceivedMessage(f"m-{n}", f"m-{n}#1", body, 1, 0)


def row(n: int, key: str | None = None, body: str = "x" * 10) -> MappedRow:
    return MappedRow(received(n, body), key or f"k-{n}", ())


# -- FlushPolicy -----------------------------------------------------------------------------


def test_empty_batch_is_never_due() -> None:
    policy = FlushPolicy(max_rows=1, max_bytes=1, max_age=0.0)
    assert policy.due(Batch(opened_at=0.0), now=10**6) is None
    assert policy.seconds_left(Batch(opened_at=0.0), now=10**6) == 0.0


def test_due_by_rows() -> None:
    policy = FlushPolicy(max_rows=3, max_bytes=10**9, max_age=60)
    batch = Batch(opened_at=0.0)
    for n in range(2):
        batch.add(row(n), now=0.0)
        assert policy.due(batch, now=0.0) is None
    batch.add(row(2), now=0.0)
    assert policy.due(batch, now=0.0) is FlushCause.ROWS


def test_rows_counts_messages_not_distinct_rows() -> None:
    policy = FlushPolicy(max_rows=2, max_bytes=10**9, max_age=60)
    batch = Batch(opened_at=0.0)
    batch.add(row(1, key="same"), now=0.0)
    batch.add(row(2, key="same"), now=0.0)
    assert len(batch.rows) == 1
    assert policy.due(batch, now=0.0) is FlushCause.ROWS


def test_due_by_bytes_of_message_bodies() -> None:
    policy = FlushPolicy(max_rows=100, max_bytes=25, max_age=60)
    batch = Batch(opened_at=0.0)
    batch.add(row(1, body="a" * 12), now=0.0)
    batch.add(row(2, body="b" * 12), now=0.0)
    assert batch.size_bytes == 24
    assert policy.due(batch, now=0.0) is None
    batch.add(DeadLetter(received(3, "c"), FailureReason.INVALID_JSON, "x"), now=0.0)
    assert batch.size_bytes == 25
    assert policy.due(batch, now=0.0) is FlushCause.BYTES


def test_due_by_age_counted_from_the_first_message() -> None:
    clock = FakeClock(100.0)
    policy = FlushPolicy(max_rows=100, max_bytes=10**9, max_age=2.0)
    batch = Batch(opened_at=clock())  # created at 100
    clock.advance(5.0)  # an empty batch ages for nothing
    assert policy.due(batch, clock()) is None
    assert policy.seconds_left(batch, clock()) == 2.0
    batch.add(row(1), clock())  # first message at 105
    assert batch.opened_at == 105.0
    clock.advance(1.5)
    batch.add(row(2), clock())  # a later message does not restart the age
    assert batch.opened_at == 105.0
    assert policy.due(batch, clock()) is None
    assert policy.seconds_left(batch, clock()) == pytest.approx(0.5)
    clock.advance(0.49)
    assert policy.due(batch, clock()) is None
    clock.advance(0.01)
    assert policy.due(batch, clock()) is FlushCause.AGE
    clock.advance(10)
    assert policy.seconds_left(batch, clock()) == 0.0


def test_rows_win_over_bytes_and_age() -> None:
    policy = FlushPolicy(max_rows=1, max_bytes=1, max_age=0.0)
    batch = Batch(opened_at=0.0)
    batch.add(row(1), now=0.0)
    assert policy.due(batch, now=100.0) is FlushCause.ROWS


# -- Batch -----------------------------------------------------------------------------------


def test_equal_keys_collapse_into_in_batch_duplicates() -> None:
    batch = Batch(opened_at=0.0)
    first, twin, other = row(1, key="k"), row(2, key="k"), row(3, key="j")
    for item in (first, twin, other):
        batch.add(item, now=0.0)
    assert batch.rows == {"k": first, "j": other}  # the first of equal keys is kept
    assert batch.in_batch_duplicates == [twin]
    assert batch.messages == [first.message, twin.message, other.message]


def test_batch_sorts_dead_letters_and_ignored() -> None:
    batch = Batch(opened_at=0.0)
    dead = DeadLetter(received(1), FailureReason.EMPTY_BODY, "empty")
    ignored = Ignored(received(2), "s3:TestEvent")
    batch.add(dead, now=0.0)
    batch.add(ignored, now=0.0)
    batch.add(row(3), now=0.0)
    assert batch.dead_letters == [dead]
    assert batch.ignored == [ignored]
    assert list(batch.rows) == ["k-3"]
    assert len(batch.messages) == 3


# -- ExponentialBackoff ----------------------------------------------------------------------


def test_backoff_grows_with_the_attempt() -> None:
    backoff = ExponentialBackoff(base=0.1, cap=100.0, floor=0.0)
    delays = [backoff.delay(n, draw=lambda: 1.0) for n in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])


def test_backoff_is_capped() -> None:
    backoff = ExponentialBackoff(base=0.1, cap=5.0, floor=0.05)
    assert backoff.delay(10, draw=lambda: 1.0) == 5.0
    assert backoff.delay(10_000, draw=lambda: 1.0) == 5.0  # huge attempts do not overflow
    assert backoff.delay(10, draw=lambda: 0.5) == 2.5


def test_backoff_has_a_floor() -> None:
    backoff = ExponentialBackoff(base=0.1, cap=5.0, floor=0.05)
    assert backoff.delay(3, draw=lambda: 0.0) == 0.05
    assert backoff.delay(0, draw=lambda: 0.1) == 0.05  # 0.01 drawn, floor wins


def test_backoff_jitter_is_scaled_by_the_draw() -> None:
    backoff = ExponentialBackoff(base=1.0, cap=60.0, floor=0.0)
    assert backoff.delay(2, draw=lambda: 0.25) == 1.0
    assert backoff.delay(2, draw=lambda: 0.75) == 3.0


def test_backoff_with_the_real_draw_stays_in_bounds() -> None:
    backoff = ExponentialBackoff(base=0.2, cap=1.0, floor=0.05)
    for attempt in range(20):
        delay = backoff.delay(attempt)
        assert 0.05 <= delay <= 1.0


# -- CircuitBreaker --------------------------------------------------------------------------


def test_breaker_starts_closed_and_allows_receiving() -> None:
    breaker = CircuitBreaker(FakeClock())
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allows_receiving
    assert breaker.history == ()


def test_breaker_full_cycle() -> None:
    clock = FakeClock(10.0)
    breaker = CircuitBreaker(clock)

    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == 10.0
    assert breaker.failures == 1
    assert not breaker.allows_receiving

    clock.advance(1)
    breaker.record_attempt()
    assert breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allows_receiving

    clock.advance(1)
    breaker.record_failure()  # the probe failed
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == 10.0  # still the start of the outage
    assert breaker.failures == 2

    clock.advance(1)
    breaker.record_attempt()
    clock.advance(1)
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allows_receiving
    assert breaker.failures == 0
    assert breaker.opened_at is None
    assert breaker.history == (
        (10.0, CircuitState.OPEN),
        (11.0, CircuitState.HALF_OPEN),
        (12.0, CircuitState.OPEN),
        (13.0, CircuitState.HALF_OPEN),
        (14.0, CircuitState.CLOSED),
    )


def test_breaker_repeated_failures_while_open_do_not_add_transitions() -> None:
    breaker = CircuitBreaker(FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.failures == 2
    assert len(breaker.history) == 1


def test_breaker_attempt_and_success_while_closed_change_nothing() -> None:
    breaker = CircuitBreaker(FakeClock())
    breaker.record_attempt()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.history == ()


def test_the_breaker_keeps_only_its_latest_transitions() -> None:
    from sluice.policies import HISTORY_KEPT

    now = [0.0]
    breaker = CircuitBreaker(lambda: now[0])
    for _ in range(1000):  # a worker flapping for months
        now[0] += 1
        breaker.record_failure()
        breaker.record_success()
    assert len(breaker.history) == HISTORY_KEPT
    assert breaker.history[-1] == (1000.0, CircuitState.CLOSED)
