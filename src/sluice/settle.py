"""Settling a loaded batch: dead letters to the DLQ, then DeleteMessageBatch.

Deletes go out in groups of 10, at most ``SettleSlots.limit`` at once: a finished 5,000-row
batch is 500 calls, and sent all at once they would take every pooled connection while the
next receives wait behind them. (The heartbeat's extensions do not wait for a slot: late, they
would let messages reappear; they are rare, needed only while a load runs long.) The limit
is set by the adaptive concurrency policy (``concurrency.py``) from what ``SettleSlots``
measures: groups asked for, calls answered, their round trips, groups waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from sluice.batching import Batch
from sluice.errors import FailureReason, SluiceError
from sluice.held import HeldMessages
from sluice.model import DeadLetter, ReceivedMessage, SettleResult
from sluice.observe.stats import WorkerCounters
from sluice.sources.base import DeadLetterTarget, Source


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    """What a loaded batch leaves to settle: what may be deleted now, what goes to the DLQ,
    and how many in-batch twins were absorbed by a row that committed."""

    to_delete: tuple[ReceivedMessage, ...]
    dead: tuple[DeadLetter, ...]
    twins_absorbed: int


def judge_batch(batch: Batch, rejected: Sequence[DeadLetter]) -> BatchVerdict:
    """Sort a batch's messages after its load: ``rejected`` are the rows the warehouse refused.

    A twin (same key, same batch) shares its row's fate: deleted if the row committed,
    dead-lettered if the warehouse refused it. Ignored messages are deleted; decode failures
    are dead-lettered. Pure.
    """
    refused = {letter.message.receipt_handle for letter in rejected}
    refused_keys = {
        row.dedupe_key for row in batch.rows.values() if row.message.receipt_handle in refused
    }
    to_delete = [item.message for item in batch.ignored]
    to_delete.extend(
        row.message for row in batch.rows.values() if row.message.receipt_handle not in refused
    )
    dead = [*batch.dead_letters, *rejected]
    absorbed = 0
    for twin in batch.in_batch_duplicates:
        if twin.dedupe_key in refused_keys:
            dead.append(
                DeadLetter(
                    twin.message,
                    FailureReason.REJECTED_BY_WAREHOUSE,
                    "same key as a row the warehouse refused",
                )
            )
        else:
            to_delete.append(twin.message)
            absorbed += 1
    return BatchVerdict(tuple(to_delete), tuple(dead), absorbed)


BATCH_LIMIT = 10  # entries per DeleteMessageBatch / ChangeMessageVisibilityBatch


class SettleSlots:
    """At most ``limit`` settle calls in flight; the limit may change while calls wait."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.busy = 0
        self.clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.asked = 0  # groups asked for, since the last ``take_figures``
        self.answered = 0
        self.seconds = 0.0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self._hand_on()

    def take_figures(self) -> tuple[int, int, float]:
        """(groups asked for, calls answered, their round trips summed) since the last call."""
        figures = (self.asked, self.answered, self.seconds)
        self.asked, self.answered, self.seconds = 0, 0, 0.0
        return figures

    async def run(self, call: Callable[[], Awaitable[SettleResult]]) -> SettleResult:
        """``call()`` once a slot is free; its round trip is measured."""
        self.asked += 1
        await self._acquire()
        started = self.clock()
        try:
            return await call()
        finally:
            self.answered += 1
            self.seconds += self.clock() - started
            self.busy -= 1
            self._hand_on()

    async def _acquire(self) -> None:
        if self.busy < self.limit and not self._waiters:
            self.busy += 1
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiters.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.busy -= 1  # granted as it was cancelled: hand the slot on
                self._hand_on()
            else:
                self._waiters.remove(granted)
            raise

    def _hand_on(self) -> None:
        while self._waiters and self.busy < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)


def _groups(messages: Sequence[ReceivedMessage]) -> list[Sequence[ReceivedMessage]]:
    return [messages[i : i + BATCH_LIMIT] for i in range(0, len(messages), BATCH_LIMIT)]


class Settler:
    """Deletes what is safe to delete; sends permanent failures to the DLQ first."""

    def __init__(
        self,
        source: Source,
        dead_letters: DeadLetterTarget | None,
        counters: WorkerCounters,
        log: structlog.typing.FilteringBoundLogger,
        *,
        clock: Callable[[], float] = time.monotonic,
        slots: SettleSlots | None = None,
    ) -> None:
        self.source = source
        self.dead_letters = dead_letters
        self.counters = counters
        self.log = log
        self.clock = clock
        self.slots = slots or SettleSlots(8, clock)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> list[ReceivedMessage]:
        """Send permanent failures to the DLQ; return the messages now safe to delete."""
        if not letters:
            return []
        for letter in letters:
            self.log.info(
                "dead_letter",
                message_id=letter.message.message_id,
                reason=letter.reason.value,
                detail=letter.detail,
            )
        if self.dead_letters is None:
            # No DLQ configured: the queue's redrive policy moves it after maxReceiveCount.
            for letter in letters:
                self.counters.left_to_redrive[letter.reason] += 1
            return []
        reasons = {letter.message.receipt_handle: letter.reason for letter in letters}
        try:
            result = await self.dead_letters.send(letters)
        except SluiceError as exc:
            result = SettleResult((), tuple((letter.message, str(exc)) for letter in letters))
        if result.succeeded:
            self.counters.dead_letter_sent_at = self.clock()
        for message in result.succeeded:
            self.counters.dead_lettered[reasons[message.receipt_handle]] += 1
        for message, why in result.failed:
            # Not deleted: SQS redelivers it, and the redrive policy (if any) moves it on.
            # Counted and logged each time, so a DLQ that cannot take letters is seen.
            self.counters.left_to_redrive[reasons[message.receipt_handle]] += 1
            self.counters.dead_letter_send_failures += 1
            self.counters.dead_letter_failed_at = self.clock()
            self.counters.dead_letter_last_error = why[:300]
            self.log.warning(
                "dead_letter_send_failed",
                message_id=message.message_id,
                reason=reasons[message.receipt_handle].value,
                error=why,
            )
        return list(result.succeeded)

    async def _in_groups(
        self,
        messages: Sequence[ReceivedMessage],
        call: Callable[[Sequence[ReceivedMessage]], Awaitable[SettleResult]],
    ) -> tuple[list[ReceivedMessage], list[tuple[ReceivedMessage, str]]]:
        """``call`` on each group of 10 through the slots; what succeeded, what failed."""

        async def one(group: Sequence[ReceivedMessage]) -> SettleResult:
            try:
                return await self.slots.run(lambda: call(group))
            except SluiceError as exc:
                return SettleResult((), tuple((m, str(exc)) for m in group))

        results = await asyncio.gather(*(one(group) for group in _groups(messages)))
        succeeded = [m for result in results for m in result.succeeded]
        failed = [item for result in results for item in result.failed]
        return succeeded, failed

    async def delete(self, messages: Sequence[ReceivedMessage]) -> None:
        if not messages:
            return
        succeeded, failed = await self._in_groups(messages, self.source.delete)
        self.counters.deleted += len(succeeded)
        self.counters.delete_failures += len(failed)
        if failed and all(why == failed[0][1] for _, why in failed):
            self.log.warning("delete_failed", messages=len(failed), error=failed[0][1])
            return
        for message, why in failed:
            self.log.warning("delete_failed", message_id=message.message_id, error=why)

    async def keep_invisible(self, held: HeldMessages, visibility: int, interval: float) -> None:
        """The heartbeat: every ``interval``, extend each held message whose visibility runs
        out within half of ``visibility``, in batches of 10. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            due = held.visible_within(now, visibility / 2)
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
            held.extended(result.succeeded, now + visibility)
            self.counters.visibility_extended += len(result.succeeded)
            self.counters.visibility_failures += len(result.failed)
