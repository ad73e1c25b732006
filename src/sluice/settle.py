"""Settling a loaded batch: dead letters to the DLQ, then DeleteMessageBatch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from sluice.batching import Batch
from sluice.errors import FailureReason, SluiceError
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
    ) -> None:
        self.source = source
        self.dead_letters = dead_letters
        self.counters = counters
        self.log = log
        self.clock = clock

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

    async def delete(self, messages: Sequence[ReceivedMessage]) -> None:
        if not messages:
            return
        try:
            result = await self.source.delete(messages)
        except SluiceError as exc:
            self.counters.delete_failures += len(messages)
            self.log.warning("delete_failed", messages=len(messages), error=str(exc))
            return
        self.counters.deleted += len(result.succeeded)
        self.counters.delete_failures += len(result.failed)
        for message, why in result.failed:
            self.log.warning("delete_failed", message_id=message.message_id, error=why)
