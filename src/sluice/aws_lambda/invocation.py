"""One invocation over the worker's core: decode -> map -> batch -> load -> dead-letter.

What differs from the worker is only the edges. There is no receiving (the event brings the
records), no deleting (the event source mapping deletes every record the answer does not
name) and no heartbeat (the mapping keeps the records invisible for the function's timeout).
So the outcome of each record is one of:

- loaded, absorbed as a duplicate, ignored, or safely in the DLQ with its reason: done, left
  for the mapping to delete;
- anything else (the load failed for a transient reason, the DLQ did not take the letter,
  the deadline came first): a failure, named in ``batchItemFailures`` so it comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from sluice.aws_lambda.budget import InvocationBudget
from sluice.batching import Batch, FlushPolicy
from sluice.decode import decode_message
from sluice.errors import FailureReason, SluiceError
from sluice.loading import Loader
from sluice.mapping import TableMapping
from sluice.model import (
    DeadLetter,
    Decoded,
    ObjectsAnnounced,
    ReceivedMessage,
    SettleResult,
)
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff
from sluice.settle import Settler, judge_batch
from sluice.sinks.base import Sink
from sluice.sources.base import DeadLetterTarget, QueueDepth


def batches_of(
    messages: Sequence[ReceivedMessage], mapping: TableMapping, flush: FlushPolicy
) -> list[Batch]:
    """The event's messages decoded into batches the flush policy allows (rows and bytes;
    age means nothing here: the event is all there is). Twins collapse within a batch."""
    batches = [Batch(opened_at=0.0)]
    for message in messages:
        if flush.due(batches[-1], 0.0) is not None:
            batches.append(Batch(opened_at=0.0))
        batches[-1].add(_within_an_invocation(decode_message(message, mapping)), 0.0)
    return [batch for batch in batches if batch.messages]


# Objects of hundreds of megabytes do not fit an invocation's 15 minutes and 6 MB answer, and
# an invocation cannot keep one record invisible while it streams: workers load them.
OBJECTS_NEED_A_WORKER = (
    "S3 event notification: Data Locker objects are loaded by a worker (sluice run), "
    "not by the Lambda handler"
)


def _within_an_invocation(decoded: Decoded | ObjectsAnnounced) -> Decoded:
    """The decoder's outcome as an invocation can act on it: a notification of objects is a
    dead letter with its reason (docs/lambda.md, limits), never silently deleted."""
    if isinstance(decoded, ObjectsAnnounced):
        return DeadLetter(
            decoded.message, FailureReason.UNSUPPORTED_ENVELOPE, OBJECTS_NEED_A_WORKER
        )
    return decoded


@dataclass(frozen=True)
class Outcome:
    """What the invocation hands back: the failed messages, and how many for lack of time."""

    failed: tuple[ReceivedMessage, ...]
    not_reached: int


class _MappingOwnsTheQueue:
    """The Settler's source, never called: the event source mapping receives, deletes and
    keeps the records invisible; the invocation only dead-letters."""

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        raise AssertionError("a Lambda invocation never receives: the event brings the records")

    async def delete(self, messages: Sequence[ReceivedMessage]) -> SettleResult:
        raise AssertionError("a Lambda invocation never deletes: the event source mapping does")

    async def change_visibility(
        self, messages: Sequence[ReceivedMessage], seconds: int
    ) -> SettleResult:
        raise AssertionError("the event source mapping keeps the records invisible")

    async def depth(self) -> QueueDepth:
        raise AssertionError("a Lambda invocation never reads the queue's depth")


class Invocation:
    """Loads one event's messages into ``sink``; ``run`` returns the records to hand back."""

    def __init__(
        self,
        sink: Sink,
        dead_letters: DeadLetterTarget | None,
        mapping: TableMapping,
        *,
        flush: FlushPolicy,
        budget: InvocationBudget,
        counters: WorkerCounters,
        backoff: ExponentialBackoff,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.mapping = mapping
        self.flush = flush
        self.budget = budget
        self.counters = counters
        self.log = log

        async def nothing() -> None:
            return None

        self.loader = Loader(
            sink,
            breaker=CircuitBreaker(asyncio.get_running_loop().time),
            backoff=backoff,
            counters=counters,
            log=log,
            on_circuit_change=nothing,
            clock=asyncio.get_running_loop().time,
            stop_retrying=budget.stop_retrying,
        )
        self.settler = Settler(_MappingOwnsTheQueue(), dead_letters, counters, log)

    async def run(self, messages: Sequence[ReceivedMessage]) -> Outcome:
        self.counters.received += len(messages)
        failed: list[ReceivedMessage] = []
        not_reached = 0
        for batch in batches_of(messages, self.mapping, self.flush):
            if not self.budget.allows_load():
                not_reached += len(batch.messages)
                failed.extend(batch.messages)
                continue
            failed.extend(await self._one(batch))
        if not_reached:
            self.log.warning(
                "deadline_near",
                not_reached=not_reached,
                margin_seconds=self.budget.margin,
                why="handed back in batchItemFailures; they come back in a later invocation",
            )
        return Outcome(tuple(failed), not_reached)

    async def _one(self, batch: Batch) -> list[ReceivedMessage]:
        """Load one batch, dead-letter what is refused for good; return what failed."""
        self.counters.ignored += len(batch.ignored)
        rejected: tuple[DeadLetter, ...] = ()
        dead: Sequence[DeadLetter] = batch.dead_letters
        failed: list[ReceivedMessage] = []
        if batch.rows:
            try:
                outcome = await asyncio.wait_for(
                    self.loader.load(list(batch.rows.values())), self.budget.for_work()
                )
            except (SluiceError, TimeoutError) as exc:
                # Transient (an outage, a stale connection that did not come back, the
                # deadline): the rows and their twins come back; decode failures still go.
                failed.extend(row.message for row in batch.rows.values())
                failed.extend(twin.message for twin in batch.in_batch_duplicates)
                self.log.warning(
                    "load_handed_back",
                    rows=len(batch.rows),
                    error=str(exc) or type(exc).__name__,
                    kind=type(exc).__name__,
                )
            else:
                rejected = outcome.rejected
                self.counters.count_load(outcome.result)
                verdict = judge_batch(batch, rejected)
                self.counters.duplicates_in_batch += verdict.twins_absorbed
                dead = verdict.dead
        sent = await self.settler.dead_letter(dead)
        sent_handles = {message.receipt_handle for message in sent}
        failed.extend(
            letter.message for letter in dead if letter.message.receipt_handle not in sent_handles
        )
        return failed
