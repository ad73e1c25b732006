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
from sluice.concurrency import ConcurrencyState, ConcurrencyView, ReceiveTally
from sluice.decode import decode_message
from sluice.errors import FailureReason, SluiceError, TransientError
from sluice.held import HeldMessages
from sluice.loading import Loader
from sluice.mapping import TableMapping
from sluice.model import DeadLetter, ObjectsAnnounced, ReceivedMessage, StopReason
from sluice.observe.stats import PipelineView, StatsLine, WorkerCounters
from sluice.pipeline_options import DRAIN_POLL_WAIT, PipelineOptions
from sluice.policies import CircuitBreaker
from sluice.settle import Settler, SettleSlots, judge_batch
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
        # Set (and replaced) when a receive brings messages or the pipeline stops: receivers
        # backing off after empty short polls wake on it and go back to polling at once.
        self._wake = asyncio.Event()
        self._batch = Batch(opened_at=clock())
        self._flush_wanted = asyncio.Event()
        self._gate = asyncio.Condition()
        self._load_slots = asyncio.Semaphore(options.load_concurrency)
        self._loads: set[asyncio.Task[None]] = set()
        self._empty_streak = 0
        self._polls_in_flight = 0
        # The last receive came back empty: one poll (the scout) stays in flight, the other
        # receivers wait at the gate until a receive brings messages.
        self._queue_empty = False
        self._scouts_pausing = 0  # receivers backing off after an empty short poll
        self.concurrency_policy = options.concurrency_policy
        self.concurrency: ConcurrencyState = self.concurrency_policy.start()
        self._tally = ReceiveTally()
        self._receivers: set[asyncio.Task[None]] = set()
        self._receivers_running = 0
        self._failures: asyncio.Queue[BaseException] = asyncio.Queue()
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

    @property
    def held(self) -> int:
        return len(self._held)

    def concurrency_view(self) -> ConcurrencyView:
        return ConcurrencyView(
            self.concurrency.receive,
            self.concurrency.delete,
            self._polls_in_flight,
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
        self._start_receivers()
        helpers = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self._concurrency_loop(), name="concurrency"),
        ]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        failed = asyncio.create_task(self._failures.get(), name="receiver-failed")
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
        await self._shutdown(list(self._receivers), helpers)
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
        self._wake.set()  # receivers backing off end now
        await self._notify_gate()  # and so do receivers waiting for room
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
        polls = self._polls_in_flight + 1
        return (
            self._held.unsettled + polls * opts.max_messages <= opts.max_held
            and self._held.settling <= opts.max_held  # deletes far behind: wait for them
            and self._held.bytes + polls * opts.poll_reserve_bytes <= opts.max_held_bytes
            and len(self._batch.messages) < opts.flush.max_rows
            and self.breaker.allows_receiving
        )

    def _may_poll(self) -> bool:
        """Room to receive, and, while the queue is empty, no other poll in flight: one long
        poll (the scout) costs what all of them would, and finds messages as soon."""
        scouting = self._polls_in_flight or self._scouts_pausing
        return self._may_receive() and not (self._queue_empty and scouting)

    async def _notify_gate(self) -> None:
        async with self._gate:
            self._gate.notify_all()

    def _start_receivers(self) -> None:
        """As many receivers as the concurrency policy wants now; extra ones end by
        themselves at the top of their loop."""
        while self._receivers_running < self.concurrency.receive and not self._stopping:
            self._receivers_running += 1
            task = asyncio.create_task(self._receive_loop(), name="receive")
            self._receivers.add(task)
            task.add_done_callback(self._receiver_done)

    def _receiver_done(self, task: asyncio.Task[None]) -> None:
        self._receivers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failures.put_nowait(task.exception())  # type: ignore[arg-type]

    def _surplus_receiver(self) -> bool:
        if self._receivers_running > self.concurrency.receive:
            self._receivers_running -= 1
            return True
        return False

    async def _wait_for_turn(self) -> bool:
        """Wait at the gate for room to poll; False when stopping. Reserves the poll."""
        async with self._gate:
            if not (self._stopping or self._may_receive()):
                waited_from = self.clock()
                await self._gate.wait_for(lambda: self._stopping or self._may_receive())
                self._tally.room_wait += self.clock() - waited_from
            await self._gate.wait_for(lambda: self._stopping or self._may_poll())
            if self._stopping:
                return False
            self._polls_in_flight += 1  # reserved under the lock, with the check
            return True

    async def _receive_loop(self) -> None:
        attempt = 0
        empty = 0  # this receiver's empty receives in a row
        opts = self.options
        while True:
            if self._surplus_receiver() or not await self._wait_for_turn():
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
                self._polls_in_flight -= 1
            attempt = 0
            if self._stopping:
                # Brought in after the stop: held only to be released with the rest.
                self._held.add(messages, self.clock() + opts.visibility_timeout)
                return
            self._tally.answered(len(messages), opts.max_messages, self.clock() - asked_at)
            if not messages:
                self.counters.empty_receives += 1
                self._empty_streak += 1
                self._queue_empty = True
                if self._drained_batch_waiting():
                    self._flush_wanted.set()
                await self._after_empty_receive(empty)
                empty += 1
                continue
            empty = 0
            self.counters.receives_with_messages += 1
            if self._empty_streak or self._queue_empty:
                self._wake.set()  # the queue has messages again: every receiver back to work
                self._wake = asyncio.Event()
            self._empty_streak = 0
            self._accept(messages)
            if self._queue_empty:
                self._queue_empty = False
                await self._notify_gate()  # the scout found messages: the others poll too

    async def _after_empty_receive(self, empty_before: int) -> None:
        """Short polls answer at once even on an empty queue: back off with jitter, so an
        idle worker costs about what long polls cost instead of a request every millisecond."""
        backoff = self.options.empty_receive_backoff
        if backoff is None:
            return
        if empty_before == 0 and self._empty_streak == 1:
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
            and self._empty_streak >= EMPTY_IN_A_ROW
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
        """Load, dead-letter, then free the load slot before deleting: the next batch may
        load while this one's deletes are on their way, and its messages, committed, stop
        counting against the receive budget (``HeldMessages.settle``)."""
        to_delete: list[ReceivedMessage] = []
        try:
            self.counters.ignored += len(batch.ignored)
            rejected: tuple[DeadLetter, ...] = ()
            if batch.rows:
                outcome = await self.loader.load(list(batch.rows.values()))
                rejected = outcome.rejected
                self.counters.inserted += outcome.result.inserted
                self.counters.duplicates_in_target += outcome.result.already_present
                self.counters.batches += 1
            verdict = judge_batch(batch, rejected)
            self.counters.duplicates_in_batch += verdict.twins_absorbed
            dead_lettered = await self.settler.dead_letter(verdict.dead)
            to_delete = [*verdict.to_delete, *dead_lettered]
            self._held.settle(to_delete)
            if len(to_delete) < len(batch.messages):  # the rest are left to come back
                kept = {m.receipt_handle for m in to_delete}
                self._held.remove(m for m in batch.messages if m.receipt_handle not in kept)
        except Exception:
            # A bug, not an outage: stop holding these messages so they reappear after
            # their visibility timeout instead of being extended forever.
            self.log.exception("process_failed", messages=len(batch.messages))
            self._held.remove(batch.messages)
            to_delete = []
        finally:
            self._load_slots.release()
            await self._notify_gate()
        try:
            await self.settler.delete(to_delete)
        except Exception:
            self.log.exception("delete_crashed", messages=len(to_delete))
        self._held.remove(to_delete)
        if self.on_progress is not None:
            self.on_progress(self.counters)
        await self._notify_gate()

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
        task = asyncio.create_task(self._process_objects(announced), name="objects")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _process_objects(self, announced: ObjectsAnnounced) -> None:
        assert self.objects is not None
        message = announced.message
        try:
            settled = await self.objects(announced, self.loader)
            self.counters.inserted += settled.inserted
            self.counters.duplicates_in_target += settled.already_present
            self.counters.dead_lettered[FailureReason.ROW_DOES_NOT_FIT] += settled.rows_failed
            if not announced.objects:
                self.counters.ignored += 1
            if not settled.retry:
                done = (
                    await self.settler.dead_letter([settled.dead])
                    if settled.dead is not None
                    else [message]
                )
                await self.settler.delete(done)
            # Kept for a retry: no longer extended, it reappears after its visibility timeout.
            self._held.remove([message])
            if self.on_progress is not None:
                self.on_progress(self.counters)
        except Exception:
            self.log.exception("objects_failed", message_id=message.message_id)
            self._held.remove([message])
        finally:
            await self._notify_gate()

    # -- background duties --------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Extend, in batches of 10, every held message before its visibility runs out."""
        visibility = self.options.visibility_timeout
        while True:
            await asyncio.sleep(self.options.heartbeat_interval)
            now = self.clock()
            due = self._held.visible_within(now, visibility / 2)
            if not due:
                continue
            # Not through the delete slots: an extension that waits its turn may come after
            # the message reappeared. All at once, as SQS allows.
            try:
                result = await self.source.change_visibility(due, visibility)
            except SluiceError as exc:
                self.counters.visibility_failures += len(due)
                self.log.warning("heartbeat_failed", messages=len(due), error=str(exc))
                continue
            self._held.extended(result.succeeded, now + visibility)
            self.counters.visibility_extended += len(result.succeeded)
            self.counters.visibility_failures += len(result.failed)

    async def _concurrency_loop(self) -> None:
        """Every window, let the policy set how many receives and deletes are in flight."""
        policy = self.concurrency_policy
        slots = self.settler.slots
        started = self.clock()
        while True:
            await asyncio.sleep(policy.window)
            now = self.clock()
            asked, answered, seconds = slots.take_figures()
            figures = self._tally.take(now - started, asked, answered, seconds, slots.waiting)
            started = now
            before = self.concurrency
            self.concurrency = policy.decide(figures, before, now)
            slots.set_limit(self.concurrency.delete)
            self._start_receivers()
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
            and self._empty_streak >= EMPTY_IN_A_ROW
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
