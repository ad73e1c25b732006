"""The SDK's retry quota and clock-offset policies, pure: no clock, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.retries.quota import RetryQuota as BotocoreQuota
from botocore.retries.standard import RetryQuotaChecker
from hypothesis import given
from hypothesis import strategies as st

from sluice.sources.sdk_policies import ClockOffset, RetryQuota

LOCAL = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_constants_are_botocores() -> None:
    quota = RetryQuota()
    assert quota.capacity == BotocoreQuota.INITIAL_CAPACITY == 500
    assert quota.retry_cost == RetryQuotaChecker._RETRY_COST == 5
    assert quota.timeout_retry_cost == RetryQuotaChecker._TIMEOUT_RETRY_REQUEST == 10
    assert quota.success_refund == RetryQuotaChecker._NO_RETRY_INCREMENT == 1


def test_an_empty_bucket_retries_nothing() -> None:
    quota = RetryQuota()
    spent = [quota.acquire(timeout=False) for _ in range(100)]
    assert spent == [5] * 100
    assert quota.available == 0
    assert quota.acquire(timeout=False) is None
    quota.succeeded()  # one success refunds 1: still not enough for a retry
    assert quota.acquire(timeout=False) is None


def test_a_timeout_costs_ten_and_too_little_left_refuses_it() -> None:
    quota = RetryQuota(capacity=15)
    assert quota.acquire(timeout=True) == 10
    assert quota.acquire(timeout=True) is None  # 5 left
    assert quota.acquire(timeout=False) == 5


def test_a_retried_success_refunds_what_it_spent_never_above_capacity() -> None:
    quota = RetryQuota()
    spent = quota.acquire(timeout=True)
    assert quota.available == 490
    quota.succeeded(spent)
    assert quota.available == 500
    quota.succeeded()
    quota.succeeded(10)
    assert quota.available == 500


@given(st.lists(st.sampled_from(["retry", "timeout", "ok", "ok-after-retry"]), max_size=300))
def test_the_bucket_stays_within_zero_and_capacity(events: list[str]) -> None:
    quota = RetryQuota()
    last: int | None = None
    for event in events:
        if event in ("retry", "timeout"):
            last = quota.acquire(timeout=event == "timeout") or last
        else:
            quota.succeeded(last if event == "ok-after-retry" else None)
        assert 0 <= quota.available <= quota.capacity


def test_a_skew_answer_with_the_servers_date_sets_the_offset() -> None:
    clock = ClockOffset()
    server = LOCAL + timedelta(minutes=10)
    assert clock.retry_after("InvalidSignatureException", server, LOCAL, timedelta(0))
    assert clock.offset == timedelta(minutes=10)
    assert clock.now(LOCAL) == server
    assert clock.corrections == 1


def test_a_call_signed_before_another_corrected_the_offset_is_retried_without_a_change() -> None:
    clock = ClockOffset()
    server = LOCAL - timedelta(minutes=7)
    assert clock.retry_after("RequestTimeTooSkewed", server, LOCAL, timedelta(0))
    later = LOCAL + timedelta(seconds=2)
    assert clock.retry_after("RequestExpired", server, later, timedelta(0))
    assert clock.corrections == 1
    # Signed with the corrected offset and still refused: not skew, no retry.
    assert not clock.retry_after("RequestExpired", server, later, clock.offset)


def test_other_answers_and_answers_without_a_date_are_not_retried() -> None:
    clock = ClockOffset()
    far = LOCAL + timedelta(hours=1)
    assert not clock.retry_after("AccessDenied", far, LOCAL, timedelta(0))
    assert not clock.retry_after("InvalidSignatureException", None, LOCAL, timedelta(0))
    assert not clock.retry_after("SignatureDoesNotMatch", LOCAL, LOCAL, timedelta(0))
    assert clock.offset == timedelta(0)
    assert clock.corrections == 0
