"""receive -> decode -> map -> batch -> load -> settle, for one process.

Imports no driver: the queue, the DLQ and the warehouse come in behind the protocols of
``sources.base`` and ``sinks.base``. Delivery contract: a message is deleted only after its
row is committed (or it is safely in the DLQ); anything else is released or left to
expire, and redelivery plus the idempotent merge absorb it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from sluice.batching import Batch
from sluice.concurrency import ConcurrencyState, ConcurrencyView
from sluice.decode import decode_message
from sluice.errors import FailureReason, SluiceError, TransientError
from sluice.held import HeldMessages
from sluice.loading import Loader
from sluice.mapping import TableMapping
from sluice.model import DeadLetter, ObjectsAnnounced, ReceivedMessage, StopReason
from sluice.observe.stats import PipelineView, StatsLine, WorkerCounters
from sluice.pipeline_options import DRAIN_POLL_WAIT, PipelineOptions
from sluice.policies import CircuitBreaker
from sluice.processing import BatchWork
from sluice.receiving import Receivers
from sluice.settle import Settler, SettleSlots
from sluice.sinks.base import Sink
from sluice.sources.base import DeadLetterTarget, Source

if TYPE_CHECKING:
    from sluice.objects.base import ObjectHandler

__all__ = ["DRAIN_POLL_WAIT", "Pipeline", "PipelineOptions"]
# Empty receives in a row that show the queue empty, though only the scout still polls.
EMPTY_IN_A_ROW = 2


class Pipeline:
    """Drains ``source`` into ``sink``. ``run`` returns when stopped or, in drain mode, empty."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        dead_letters: DeadLetterTarget | None,
        mapping: TableMapping,
        options: PipelineOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[WorkerCounters], None] | None = None,
        on_loaded: Callable[[int, float], None] | None = None,
        objects: ObjectHandler | None = None,
    ) -> None:
        self.source = source
        # Loads the rows of objects an S3 event notification names (docs/data-locker.md);
        # without it such a message is dead-lettered as unsupported_envelope.
        self.objects = objects
        self.sink = sink
        self.dead_letters = dead_letters
        self.mapping = mapping
        self.options = options
        self.clock = clock
        self.on_progress = on_progress
        self.counters = WorkerCounters()
        self.breaker = CircuitBreaker(clock)
        self.log = structlog.get_logger("sluice.pipeline").bind(worker=options.worker_id)
        self._held = HeldMessages()
        self._stopping = False  # set at shutdown: polls in flight finish, nothing new starts
        self._batch = Batch(opened_at=clock())
        self._flush_wanted = asyncio.Event()
        self._gate = asyncio.Condition()
        self._load_slots = asyncio.Semaphore(options.load_concurrency)
        self._loads: set[asyncio.Task[None]] = set()
        self.concurrency_policy = options.concurrency_policy
        self.concurrency: ConcurrencyState = self.concurrency_policy.start()
        self.receivers = Receivers(
            source,
            options,
            self.counters,
            self.log,
            clock,
            gate=self._gate,
            may_receive=self._may_receive,
            accept=self._accept,
            hold_late=self._hold_late,
            found_empty=self._found_empty,
        )
        self.stats = StatsLine(options.worker_id, clock, clock())
        self.loader = Loader(
            sink,
            breaker=self.breaker,
            backoff=options.backoff,
            counters=self.counters,
            log=self.log,
            on_circuit_change=self._notify_gate,
            clock=clock,
            on_loaded=on_loaded,
        )
        self.settler = Settler(
            source,
            dead_letters,
            self.counters,
            self.log,
            clock=clock,
            slots=SettleSlots(self.concurrency.delete, clock),
        )
        self.work = BatchWork(
            self.loader,
            self.settler,
            self._held,
            self.counters,
            self.log,
            room_changed=self._notify_gate,
            objects=objects,
            on_progress=on_progress,
        )

    @property
    def held(self) -> int:
        return len(self._held)

    def concurrency_view(self) -> ConcurrencyView:
        return ConcurrencyView(
            self.concurrency.receive,
            self.concurrency.delete,
            self.receivers.polls_in_flight,
            self.settler.slots.busy,
            self._held.settling,
            self.concurrency.reason,
        )

    @property
    def held_bytes(self) -> int:
        return self._held.bytes

    def view(self) -> PipelineView:
        """A snapshot for metrics: counters, held messages, oldest SentTimestamp, circuit."""
        return PipelineView(
            self.counters,
            len(self._held),
            self._held.oldest_sent_ms(),
            self.breaker.state,
            self._held.bytes,
        )

    # -- the run ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> StopReason:
        self.receivers.start(self.concurrency.receive)
        helpers = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(
                self.settler.keep_invisible(
                    self._held, self.options.visibility_timeout, self.options.heartbeat_interval
                ),
                name="heartbeat",
            ),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self._concurrency_loop(), name="concurrency"),
        ]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        failed = asyncio.create_task(self.receivers.failures.get(), name="receiver-failed")
        drained = (
            asyncio.create_task(self._drain_watch(), name="drain") if self.options.drain else None
        )
        watched = [stopped, failed] + ([drained] if drained else [])
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        reason = StopReason.DRAINED if drained in done else StopReason.SIGNALLED
        failure = failed.result() if failed in done else None
        for task in (stopped, drained, failed):
            if task is not None:
                task.cancel()
        await self._shutdown(self.receivers.tasks, helpers)
        self.log.info("stats", **self.stats.render(self.counters, self.held))
        if failure is not None:
            raise failure
        return reason

    async def _shutdown(
        self, receivers: list[asyncio.Task[None]], helpers: list[asyncio.Task[None]]
    ) -> None:
        """Stop receiving, flush and settle what is held, release the rest, within grace.

        Polls in flight are not cancelled: SQS may already have hidden the messages a poll is
        bringing, and a cancelled poll would strand them until their visibility timeout. Each
        finishes (within the grace), and what it brings is released with the rest.
        """
        deadline = self.clock() + self.options.shutdown_grace
        margin = min(2.0, self.options.shutdown_grace * 0.2)  # kept for releasing
        self._stopping = True
        await self.receivers.stop()  # receivers backing off or waiting for room end now
        self._flush_wanted.set()
        helpers[0].cancel()
        await asyncio.gather(helpers[0], return_exceptions=True)
        if self._batch.messages:
            # A retrying load may hold every slot (warehouse down): wait no longer than the
            # grace allows; an unflushed batch is released below like anything else held.
            try:
                await asyncio.wait_for(
                    self._load_slots.acquire(), max(0.0, deadline - margin - self.clock())
                )
            except TimeoutError:
                self.log.warning("final_flush_skipped", messages=len(self._batch.messages))
            else:
                self._start_processing(self._take_batch())
        waiting = [*self._loads, *(task for task in receivers if not task.done())]
        while waiting:  # a load ends in deletes; a receiver may bring a last few messages
            _, pending = await asyncio.wait(
                waiting, timeout=max(0.0, deadline - margin - self.clock())
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            waiting = [task for task in self._loads if not task.done()]
        for task in helpers[1:]:
            task.cancel()
        await asyncio.gather(*helpers[1:], return_exceptions=True)
        await self._release_held(max(0.1, deadline - self.clock()))

    async def _release_held(self, seconds: float) -> None:
        messages = self._held.take_all()
        if not messages:
            return
        try:
            result = await asyncio.wait_for(self.source.change_visibility(messages, 0), seconds)
        except (SluiceError, TimeoutError) as exc:
            self.log.warning("release_failed", messages=len(messages), error=str(exc))
            return
        self.counters.released += len(result.succeeded)
        self.log.info("released", messages=len(result.succeeded), failed=len(result.failed))

    # -- receiving ----------------------------------------------------------------------

    def _may_receive(self) -> bool:
        """Room for one more poll's worth, by count and by bytes, counting polls already in
        flight, and a batch that is not already full (the flusher or a load slot is behind),
        and a closed circuit.
        """
        opts = self.options
        polls = self.receivers.polls_in_flight + 1
        return (
            self._held.unsettled + polls * opts.max_messages <= opts.max_held
            and self._held.settling <= opts.max_held  # deletes far behind: wait for them
            and self._held.bytes + polls * opts.poll_reserve_bytes <= opts.max_held_bytes
            and len(self._batch.messages) < opts.flush.max_rows
            and self.breaker.allows_receiving
        )

    async def _notify_gate(self) -> None:
        async with self._gate:
            self._gate.notify_all()

    def _hold_late(self, messages: Sequence[ReceivedMessage]) -> None:
        """Brought in after the stop: held only to be released with the rest."""
        self._held.add(messages, self.clock() + self.options.visibility_timeout)

    def _found_empty(self) -> None:
        if self._drained_batch_waiting():
            self._flush_wanted.set()

    def _accept(self, messages: Sequence[ReceivedMessage]) -> None:
        now = self.clock()
        self._held.add(messages, now + self.options.visibility_timeout)
        self.counters.received += len(messages)
        for message in messages:
            decoded = decode_message(message, self.mapping)
            if isinstance(decoded, ObjectsAnnounced):
                self._route_objects(decoded, now)
            else:
                self._batch.add(decoded, now)
        if self.options.flush.due(self._batch, now) is not None:
            self._flush_wanted.set()

    # -- flushing -----------------------------------------------------------------------

    def _drained_batch_waiting(self) -> bool:
        """Drain mode, every receiver just found the queue empty, and a batch is open: no
        message will come to fill it, so waiting out its age (30 s for Redshift) is waste."""
        return (
            self.options.drain
            and bool(self._batch.messages)
            and self.receivers.empty_streak >= EMPTY_IN_A_ROW
        )

    def _take_batch(self) -> Batch:
        batch, self._batch = self._batch, Batch(opened_at=self.clock())
        return batch

    async def _flush_loop(self) -> None:
        while not self._stopping:
            timeout = self.options.flush.seconds_left(self._batch, self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), timeout)
            # Python 3.11's wait_for can swallow a cancellation that lands as the event is
            # set, so the stop is also checked here rather than trusted to cancel().
            if self._stopping:
                return
            self._flush_wanted.clear()
            due = self.options.flush.due(self._batch, self.clock())
            if due is None and not self._drained_batch_waiting():
                continue
            await self._load_slots.acquire()
            self._start_processing(self._take_batch())
            await self._notify_gate()  # receivers paused on a full batch may go on

    def _start_processing(self, batch: Batch) -> None:
        """Settle ``batch`` in the background; the caller holds one load slot for it."""
        task = asyncio.create_task(self._process(batch), name="process")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _process(self, batch: Batch) -> None:
        await self.work.process(batch, self._load_slots.release)

    # -- objects announced by S3 event notifications -------------------------------------

    def _route_objects(self, announced: ObjectsAnnounced, now: float) -> None:
        """Hand the message to the object loader; it stays held (the heartbeat extends it)
        until its objects are loaded, then it is settled here like any other."""
        if self.objects is None:
            why = "S3 event notification: this process has no object loader"
            self._batch.add(
                DeadLetter(announced.message, FailureReason.UNSUPPORTED_ENVELOPE, why), now
            )
            return
        task = asyncio.create_task(self.work.load_objects(announced), name="objects")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    # -- background duties --------------------------------------------------------------

    async def _concurrency_loop(self) -> None:
        """Every window, let the policy set how many receives and deletes are in flight."""
        policy = self.concurrency_policy
        slots = self.settler.slots
        started = self.clock()
        while True:
            await asyncio.sleep(policy.window)
            now = self.clock()
            asked, answered, seconds = slots.take_figures()
            figures = self.receivers.tally.take(
                now - started, asked, answered, seconds, slots.waiting
            )
            started = now
            before = self.concurrency
            self.concurrency = policy.decide(figures, before, now)
            slots.set_limit(self.concurrency.delete)
            self.receivers.start(self.concurrency.receive)
            if (before.receive, before.delete) != (
                self.concurrency.receive,
                self.concurrency.delete,
            ):
                self.log.info(
                    "concurrency",
                    receive=self.concurrency.receive,
                    delete=self.concurrency.delete,
                    why=self.concurrency.reason.value,
                    rate=round(figures.rate),
                )

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.stats_interval)
            self.log.info("stats", **self.stats.render(self.counters, self.held))

    def _is_idle(self) -> bool:
        return (
            not self._held
            and not self._loads
            and not self._batch.messages
            and self.receivers.empty_streak >= EMPTY_IN_A_ROW
        )

    async def _drain_watch(self) -> None:
        """Return once nothing is held here and the queue reports nothing left, twice."""
        confirmations = 0
        while confirmations < 2:
            await asyncio.sleep(0.2)
            if not self._is_idle():
                confirmations = 0
                continue
            try:
                depth = await self.source.depth()
            except TransientError:
                continue
            confirmations = confirmations + 1 if depth.total == 0 else 0
