"""How much of an invocation's time is left for loading: a small named policy. Pure.

Lambda stops a function at its timeout wherever it is; the event source mapping then returns
every record of the event to the queue, those already loaded and dead-lettered included (the
merge absorbs the rows, but dead letters would be sent twice). So the handler stops loading
``DEADLINE_MARGIN_SECONDS`` before the deadline and names the records it has not finished
in ``batchItemFailures``: they come back alone, and nothing that was done is redone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Kept free at the end of every invocation: enough to send one batch's dead letters (three
# SendMessageBatch attempts with backoff, about a second each at worst) and to return.
DEADLINE_MARGIN_SECONDS = 5.0
# Attempts at one batch's load before its records are handed back as failures: a stale
# connection costs one (the next attempt reconnects); an outage is not waited out here, as a
# worker would, since every second of waiting is billed and the queue keeps the records.
LOAD_ATTEMPTS = 3


@dataclass(frozen=True)
class InvocationBudget:
    """``remaining()``: seconds before Lambda's deadline (the context's own count)."""

    remaining: Callable[[], float]
    margin: float = DEADLINE_MARGIN_SECONDS
    attempts: int = LOAD_ATTEMPTS

    def for_work(self) -> float:
        """Seconds the next step may take and still leave the margin (0 or more)."""
        return max(0.0, self.remaining() - self.margin)

    def allows_load(self) -> bool:
        """Whether a load may start at all: some time must be left beyond the margin."""
        return self.for_work() > 0.0

    def stop_retrying(self, failures: int, delay: float) -> bool:
        """After ``failures`` failed attempts: give up when out of attempts, or when waiting
        ``delay`` s before the next one would run into the margin."""
        return failures >= self.attempts or delay >= self.for_work()


def remaining_seconds(millis: Callable[[], int]) -> Callable[[], float]:
    """The context's ``get_remaining_time_in_millis`` in seconds."""
    return lambda: millis() / 1000.0
