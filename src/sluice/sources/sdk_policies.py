"""Two small policies the AWS SDKs apply to every call, kept here as pure objects.

- ``RetryQuota``: botocore's "standard" retry mode spends from one token bucket per client
  before each retry (5 tokens, 10 after a timeout), refunds 1 for each call that succeeds
  first time and what it spent when a retried call succeeds, and retries nothing once the
  bucket is empty: a service that is throttling or failing every call is not hammered
  harder by every caller at once.
- ``ClockOffset``: the SDKs that correct clock skew read the service's ``Date`` header from
  a "signature expired / too skewed" answer, sign from then on with that offset added to the
  local clock, and retry the rejected call once.

Neither reads a clock: times come in as arguments, so the tests need no sleeping or patching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sluice.aws_errors import CLOCK_SKEW_CODES


@dataclass
class RetryQuota:
    """botocore's standard-mode retry quota (``botocore.retries.quota`` and
    ``RetryQuotaChecker``), with its constants."""

    capacity: int = 500
    retry_cost: int = 5
    timeout_retry_cost: int = 10
    success_refund: int = 1
    available: int = field(init=False)

    def __post_init__(self) -> None:
        self.available = self.capacity

    def acquire(self, *, timeout: bool) -> int | None:
        """Spend for one retry: what was spent, or None (do not retry) when too little is left."""
        cost = self.timeout_retry_cost if timeout else self.retry_cost
        if cost > self.available:
            return None
        self.available -= cost
        return cost

    def succeeded(self, spent: int | None = None) -> None:
        """A call succeeded: refund what its retries spent, or 1 when it needed none."""
        refund = self.success_refund if spent is None else spent
        self.available = min(self.capacity, self.available + refund)

    def __repr__(self) -> str:
        return f"RetryQuota({self.available}/{self.capacity})"


# Smaller than any service's signing window (SQS's is 5 minutes, most services' 15), larger
# than the Date header's one-second resolution plus a slow answer: a rejection with the clocks
# closer than this was not caused by skew (a wrong secret key) and is not retried.
SKEW_THRESHOLD = timedelta(seconds=60)


@dataclass
class ClockOffset:
    """How far the service's clock is ahead of ours; signatures use ``local + offset``."""

    offset: timedelta = timedelta(0)
    corrections: int = 0  # how many times the offset changed (each change is logged once)
    threshold: timedelta = SKEW_THRESHOLD

    def now(self, local: datetime) -> datetime:
        return local + self.offset

    def retry_after(
        self, code: str, server_time: datetime | None, local: datetime, signed_with: timedelta
    ) -> bool:
        """After a rejection with ``code``: whether to sign again and retry once.

        Yes when it is a clock-skew answer and either the server's clock (``server_time``,
        its ``Date`` header) is off ours by another offset than the one in use (the offset is
        corrected to it), or another call corrected the offset since this one was signed
        with ``signed_with``. No for any other answer, or when no Date came back.
        """
        if code not in CLOCK_SKEW_CODES or server_time is None:
            return False
        skew = server_time - local
        if abs(skew - self.offset) >= self.threshold:
            self.offset = skew
            self.corrections += 1
            return True
        return signed_with != self.offset
