"""The receivers: long polls kept in flight, as many as the concurrency policy says.

Each receiver waits at the pipeline's gate for room (``may_receive``: held count and bytes,
the batch, the circuit), reserves its poll under the gate's lock, polls, and hands what it
brings to ``accept``. While the queue is empty only one poll stays in flight (the scout):
one long poll costs what all of them would and finds messages as soon; the first receive
that brings messages wakes every receiver. Short polls (``SQS_WAIT_TIME_SECONDS=0``) back off
with jitter after an empty answer. At a stop no new poll starts, but polls in flight finish:
SQS may already have hidden what they bring, which is handed to ``hold_late`` for release.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from sluice.concurrency import ReceiveTally
from sluice.errors import TransientError
from sluice.model import ReceivedMessage
from sluice.observe.stats import WorkerCounters
from sluice.pipeline_options import PipelineOptions
from sluice.sources.base import Source


class Receivers:
    """Starts and stops receive loops; counts what the concurrency policy needs to judge."""

    def __init__(
        self,
        source: Source,
        options: PipelineOptions,
        counters: WorkerCounters,
        log: structlog.typing.FilteringBoundLogger,
        clock: Callable[[], float],
        *,
        gate: asyncio.Condition,
        may_receive: Callable[[], bool],
        accept: Callable[[Sequence[ReceivedMessage]], None],
        hold_late: Callable[[Sequence[ReceivedMessage]], None],
        found_empty: Callable[[], None],
    ) -> None:
        self.source = source
        self.options = options
        self.counters = counters
        self.log = log
        self.clock = clock
        self.gate = gate
        self.may_receive = may_receive
        self.accept = accept
        self.hold_late = hold_late
        self.found_empty = found_empty
        self.wanted = 0  # receive loops the policy wants; set by ``start``
        self.stopping = False  # no new poll starts; polls in flight finish
        self.polls_in_flight = 0
        self.empty_streak = 0  # empty receives in a row, any receiver
        self.tally = ReceiveTally()
        self.failures: asyncio.Queue[BaseException] = asyncio.Queue()
        # Set (and replaced) when a receive brings messages or the pipeline stops: receivers
        # backing off after empty short polls wake on it and go back to polling at once.
        self._wake = asyncio.Event()
        # The last receive came back empty: one poll (the scout) stays in flight, the other
        # receivers wait at the gate until a receive brings messages.
        self._queue_empty = False
        self._scouts_pausing = 0  # receivers backing off after an empty short poll
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def start(self, wanted: int) -> None:
        """As many receive loops as ``wanted``; extra ones end by themselves at the top of
        their loop."""
        self.wanted = wanted
        while self._running < wanted and not self.stopping:
            self._running += 1
            task = asyncio.create_task(self._receive_loop(), name="receive")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    async def stop(self) -> None:
        """No new poll; receivers backing off or waiting for room end now."""
        self.stopping = True
        self._wake.set()
        async with self.gate:
            self.gate.notify_all()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.put_nowait(task.exception())  # type: ignore[arg-type]

    def _surplus(self) -> bool:
        if self._running > self.wanted:
            self._running -= 1
            return True
        return False

    def _may_poll(self) -> bool:
        """Room to receive, and, while the queue is empty, no other poll in flight."""
        scouting = self.polls_in_flight or self._scouts_pausing
        return self.may_receive() and not (self._queue_empty and scouting)

    async def _wait_for_turn(self) -> bool:
        """Wait at the gate for room to poll; False when stopping. Reserves the poll."""
        async with self.gate:
            if not (self.stopping or self.may_receive()):
                waited_from = self.clock()
                await self.gate.wait_for(lambda: self.stopping or self.may_receive())
                self.tally.room_wait += self.clock() - waited_from
            await self.gate.wait_for(lambda: self.stopping or self._may_poll())
            if self.stopping:
                return False
            self.polls_in_flight += 1  # reserved under the lock, with the check
            return True

    async def _receive_loop(self) -> None:
        attempt = 0
        empty = 0  # this receiver's empty receives in a row
        opts = self.options
        while True:
            if self._surplus() or not await self._wait_for_turn():
                return
            asked_at = self.clock()
            try:
                messages = await self.source.receive(
                    opts.max_messages, opts.wait_time_seconds, opts.visibility_timeout
                )
            except TransientError as exc:
                self.counters.receive_errors += 1
                delay = opts.backoff.delay(attempt)
                attempt += 1
                self.log.warning("receive_failed", error=str(exc), retry_in=round(delay, 2))
                await self._pause(delay)
                continue
            finally:
                self.polls_in_flight -= 1
            attempt = 0
            if self.stopping:
                self.hold_late(messages)  # brought in after the stop: released with the rest
                return
            self.tally.answered(len(messages), opts.max_messages, self.clock() - asked_at)
            if not messages:
                self.counters.empty_receives += 1
                self.empty_streak += 1
                self._queue_empty = True
                self.found_empty()
                await self._after_empty_receive(empty)
                empty += 1
                continue
            empty = 0
            self.counters.receives_with_messages += 1
            if self.empty_streak or self._queue_empty:
                self._wake.set()  # the queue has messages again: every receiver back to work
                self._wake = asyncio.Event()
            self.empty_streak = 0
            self.accept(messages)
            if self._queue_empty:
                self._queue_empty = False
                async with self.gate:  # the scout found messages: the others poll too
                    self.gate.notify_all()

    async def _after_empty_receive(self, empty_before: int) -> None:
        """Short polls answer at once even on an empty queue: back off with jitter, so an
        idle worker costs about what long polls cost instead of a request every millisecond."""
        backoff = self.options.empty_receive_backoff
        if backoff is None:
            return
        if empty_before == 0 and self.empty_streak == 1:
            self.log.info(
                "short_poll_backoff",
                why="SQS_WAIT_TIME_SECONDS=0: empty receives back off up to "
                f"{backoff.cap:g} s; 1-20 makes them long polls",
            )
        self._scouts_pausing += 1  # still the scout while it sleeps: no other poll starts
        try:
            await self._pause(backoff.delay(empty_before))
        finally:
            self._scouts_pausing -= 1

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if messages come or the pipeline stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
