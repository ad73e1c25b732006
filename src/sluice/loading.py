"""Loading one batch: retried through outages, split to isolate rows the warehouse refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from sluice.errors import FailureReason, PermanentError, TransientError
from sluice.model import DeadLetter, LoadResult, MappedRow
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff
from sluice.sinks.base import RowsRejectedError, Sink


class Loader:
    """Loads batches into ``sink``; the breaker tells receivers when to pause."""

    def __init__(
        self,
        sink: Sink,
        *,
        breaker: CircuitBreaker,
        backoff: ExponentialBackoff,
        counters: WorkerCounters,
        log: structlog.typing.FilteringBoundLogger,
        on_circuit_change: Callable[[], Awaitable[None]],
        clock: Callable[[], float],
        on_loaded: Callable[[int, float], None] | None = None,
    ) -> None:
        self.sink = sink
        self.breaker = breaker
        self.backoff = backoff
        self.counters = counters
        self.log = log
        self.on_circuit_change = on_circuit_change
        self.clock = clock
        self.on_loaded = on_loaded

    async def load(self, rows: Sequence[MappedRow]) -> tuple[LoadResult, list[DeadLetter]]:
        """Load ``rows``; if the warehouse refuses their data, split to find the culprits."""
        try:
            return await self._retrying(rows), []
        except RowsRejectedError as exc:
            if len(rows) == 1:
                self.log.warning(
                    "row_rejected", message_id=rows[0].message.message_id, error=str(exc)
                )
                letter = DeadLetter(rows[0].message, FailureReason.REJECTED_BY_WAREHOUSE, str(exc))
                return LoadResult(0, 0), [letter]
        middle = len(rows) // 2
        first, first_dead = await self.load(rows[:middle])
        second, second_dead = await self.load(rows[middle:])
        merged = LoadResult(
            first.inserted + second.inserted, first.already_present + second.already_present
        )
        return merged, first_dead + second_dead

    async def _retrying(self, rows: Sequence[MappedRow]) -> LoadResult:
        """Retry until the warehouse takes the load; receiving pauses meanwhile."""
        attempt = 0
        while True:
            if attempt:
                self.breaker.record_attempt()
            started = self.clock()
            try:
                result = await self.sink.load(rows)
            except RowsRejectedError:
                self.breaker.record_success()  # the warehouse answered; the data is at fault
                raise
            except (TransientError, PermanentError) as exc:
                self.counters.load_failures += 1
                self.breaker.record_failure()
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.log.error(
                    "load_failed",
                    rows=len(rows),
                    error=str(exc),
                    kind=type(exc).__name__,
                    retry_in=round(delay, 2),
                    circuit=self.breaker.state.value,
                )
                await self.on_circuit_change()
                await asyncio.sleep(delay)
                continue
            if attempt:
                self.log.info("load_recovered", attempts=attempt + 1)
            self.breaker.record_success()
            await self.on_circuit_change()
            seconds = self.clock() - started
            self.log.debug(
                "loaded", rows=len(rows), inserted=result.inserted, seconds=round(seconds, 4)
            )
            if self.on_loaded is not None:
                self.on_loaded(len(rows), seconds)
            return result
