"""Loading one batch: retried through outages, split to isolate rows the warehouse refuses.

A refused batch is bisected to find the rows at fault, which are dead-lettered alone. But
when the table itself refuses what the mapping accepts (a column's type changed under a
running worker), every row fails alone with one error: ``RejectionPolicy`` spots that, and
the batch is then held and retried whole, with the circuit open, until the table takes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog

from sluice.errors import FailureReason, PermanentError, SchemaError, SluiceError, TransientError
from sluice.model import DeadLetter, LoadResult, MappedRow
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff, RejectionPolicy
from sluice.sinks.base import RowsRejectedError, Sink

Loaded = tuple[LoadResult, list[DeadLetter]]  # what one step of the bisection found
# Asked after each failed attempt with the failures so far and the next delay: True ends the
# retries and raises the last error. A worker never stops (it holds the messages and keeps
# them invisible); a Lambda invocation must, before its deadline.
StopRetrying = Callable[[int, float], bool]


class LoadOutcome(NamedTuple):
    """A batch loaded: what the merge committed, and the rows the warehouse refused (each a
    dead letter with the error's signature)."""

    result: LoadResult
    rejected: tuple[DeadLetter, ...]


@dataclass
class _Isolation:
    """What one attempt at a batch has learnt: loads that succeeded, rows that failed alone."""

    rows: int
    loaded: int = 0
    lone: list[RowsRejectedError] = field(default_factory=list)
    suspecting: bool = True  # off once the rest of the batch showed another error

    @property
    def signatures(self) -> list[str]:
        return [error.signature for error in self.lone]


class _TableSuspected(Exception):
    """The first rows tried alone all failed the same way and nothing loaded yet."""


class _TableAtFault(Exception):
    def __init__(self, error: RowsRejectedError) -> None:
        super().__init__(error.signature)
        self.error = error


def _merged(first: LoadResult, second: LoadResult) -> LoadResult:
    return LoadResult(
        first.inserted + second.inserted, first.already_present + second.already_present
    )


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
        rejections: RejectionPolicy | None = None,
        stop_retrying: StopRetrying | None = None,
    ) -> None:
        self.sink = sink
        self.breaker = breaker
        self.backoff = backoff
        self.counters = counters
        self.log = log
        self.on_circuit_change = on_circuit_change
        self.clock = clock
        self.on_loaded = on_loaded
        self.rejections = rejections or RejectionPolicy()
        self.stop_retrying = stop_retrying
        # The signature of a table fault no load has cleared yet (shared by all batches).
        self.table_fault: str | None = None

    async def load(self, rows: Sequence[MappedRow]) -> LoadOutcome:
        """Load ``rows``; if the warehouse refuses their data, split to find the culprits.

        Returns once every row is committed or dead-lettered. While the table refuses every
        row, nothing is dead-lettered: the batch is retried whole, with backoff, and the
        messages stay held (the pipeline's heartbeat keeps them invisible).
        """
        attempt = 0
        while True:
            try:
                result, rejected = await self._attempt(rows)
            except _TableAtFault as fault:
                await self._wait_for_table(len(rows), fault.error, attempt)
                attempt += 1
                self.breaker.record_attempt()
                continue
            return LoadOutcome(result, tuple(rejected))

    async def _attempt(self, rows: Sequence[MappedRow]) -> Loaded:
        isolation = _Isolation(len(rows))
        try:
            result, dead = await self._split(rows, isolation)
        except _TableSuspected:
            result, dead = await self._verify(rows, isolation)
        for letter in dead:
            self.log.warning(
                "row_rejected", message_id=letter.message.message_id, error=letter.detail
            )
        return result, dead

    async def _split(self, rows: Sequence[MappedRow], isolation: _Isolation) -> Loaded:
        try:
            result = await self._retrying(rows)
        except RowsRejectedError as exc:
            return await self._isolate(rows, exc, isolation)
        isolation.loaded += 1
        return result, []

    async def _isolate(
        self, rows: Sequence[MappedRow], exc: RowsRejectedError, isolation: _Isolation
    ) -> Loaded:
        """``rows`` were refused together: bisect, or, for one row, judge it."""
        if len(rows) > 1:
            middle = len(rows) // 2
            first, first_dead = await self._split(rows[:middle], isolation)
            second, second_dead = await self._split(rows[middle:], isolation)
            return _merged(first, second), first_dead + second_dead
        isolation.lone.append(exc)
        if isolation.suspecting and self.rejections.suspects_table(
            rows=isolation.rows, loaded=isolation.loaded, lone=isolation.signatures
        ):
            raise _TableSuspected
        return LoadResult(0, 0), [self._refusal(rows[0], exc)]

    async def _verify(self, rows: Sequence[MappedRow], isolation: _Isolation) -> Loaded:
        """The rows tried alone (the first ones, as bisection goes left first) all failed
        one way: load the rest in one go to tell a bad table from a run of bad rows."""
        probed, rest = rows[: len(isolation.lone)], rows[len(isolation.lone) :]
        result, remainder = LoadResult(0, 0), None
        if rest:
            try:
                result = await self._retrying(rest)
                isolation.loaded += 1
            except RowsRejectedError as exc:
                remainder = exc
        if self.rejections.blames_table(
            rows=len(rows),
            loaded=isolation.loaded,
            lone=isolation.signatures,
            remainder=None if remainder is None else remainder.signature,
            active=self.table_fault,
        ):
            raise _TableAtFault(isolation.lone[0])
        if remainder is None and rest:
            # The rest loaded after the probed rows had failed: if the table was mended in
            # between (a column altered back mid-bisection), they load now. Each is tried
            # alone once more; only a row that fails after its neighbours loaded is at fault.
            again, dead = await self._once_more_alone(probed)
            return _merged(result, again), dead
        dead = [
            self._refusal(row, error) for row, error in zip(probed, isolation.lone, strict=True)
        ]
        if remainder is not None:
            isolation.suspecting = False  # errors differ: the rows are at fault, bisect on
            result, rest_dead = await self._isolate(rest, remainder, isolation)
            dead.extend(rest_dead)
        return result, dead

    async def _once_more_alone(self, rows: Sequence[MappedRow]) -> Loaded:
        result, dead = LoadResult(0, 0), []
        for row in rows:
            try:
                result = _merged(result, await self._retrying([row]))
            except RowsRejectedError as exc:
                dead.append(self._refusal(row, exc))
        return result, dead

    def _refusal(self, row: MappedRow, error: RowsRejectedError) -> DeadLetter:
        """A row the warehouse refused, as a dead letter whose detail is the error's signature:
        the warehouse's own text may quote the value, which stays out of info-level logs and
        the DLQ's attributes (the body holds it anyway)."""
        self.log.debug("row_rejected_text", message_id=row.message.message_id, error=str(error))
        return DeadLetter(row.message, FailureReason.REJECTED_BY_WAREHOUSE, error.signature)

    async def _wait_for_table(self, rows: int, error: RowsRejectedError, attempt: int) -> None:
        """The table refuses every row: open the circuit, say why, back off."""
        self.counters.load_failures += 1
        self.table_fault = error.signature
        self.breaker.record_failure()
        circuit = self.breaker.state.value  # before awaiting: another batch may probe meanwhile
        delay = self.backoff.delay(attempt)
        # The signature, not the error's text: the text may quote a message's value.
        self.log.error(
            "table_rejects_rows",
            rows=rows,
            error=error.signature,
            schema=await self._schema_report(),
            retry_in=round(delay, 2),
            circuit=circuit,
        )
        await self.on_circuit_change()
        if self.stop_retrying is not None and self.stop_retrying(attempt + 1, delay):
            raise TransientError(f"the table refuses every row: {error.signature}")
        await asyncio.sleep(delay)

    async def _schema_report(self) -> str:
        """What ``check_schema`` says of the table now, as one line for the log."""
        try:
            await self.sink.check_schema()
        except SchemaError as exc:
            return str(exc)
        except SluiceError as exc:
            return f"not checked ({type(exc).__name__}): {exc}"
        return "matches the mapping (a constraint or a narrower type may refuse the rows)"

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
                if self.table_fault is None:
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
                if self.stop_retrying is not None and self.stop_retrying(attempt, delay):
                    raise
                await asyncio.sleep(delay)
                continue
            if attempt:
                self.log.info("load_recovered", attempts=attempt + 1)
            if self.table_fault is not None:
                self.log.info("table_accepts_rows", error=self.table_fault)
                self.table_fault = None
            self.breaker.record_success()
            await self.on_circuit_change()
            seconds = self.clock() - started
            self.log.debug(
                "loaded", rows=len(rows), inserted=result.inserted, seconds=round(seconds, 4)
            )
            if self.on_loaded is not None:
                self.on_loaded(len(rows), seconds)
            return result
