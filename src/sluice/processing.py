"""What happens to work once the receivers let go of it: a batch loaded, dead-lettered and
deleted; the objects an S3 event notification names loaded, then their message settled.

The pipeline decides when (load slots, flushing, shutdown); this module decides what, for
one batch or one notification at a time. Delivery contract, as the pipeline's: a message is
deleted only after its row committed or it is safely in the DLQ; anything else stops being
held, so it reappears after its visibility timeout and the idempotent merge absorbs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from sluice.batching import Batch
from sluice.errors import FailureReason
from sluice.held import HeldMessages
from sluice.loading import Loader
from sluice.model import DeadLetter, ObjectsAnnounced, ReceivedMessage
from sluice.observe.stats import WorkerCounters
from sluice.settle import Settler, judge_batch

if TYPE_CHECKING:
    from sluice.objects.base import ObjectHandler


class BatchWork:
    """Loads and settles batches and announced objects; tells ``room_changed`` whenever
    messages stop counting against what receivers may bring in."""

    def __init__(
        self,
        loader: Loader,
        settler: Settler,
        held: HeldMessages,
        counters: WorkerCounters,
        log: structlog.typing.FilteringBoundLogger,
        *,
        room_changed: Callable[[], Awaitable[None]],
        objects: ObjectHandler | None = None,
        on_progress: Callable[[WorkerCounters], None] | None = None,
    ) -> None:
        self.loader = loader
        self.settler = settler
        self.held = held
        self.counters = counters
        self.log = log
        self.room_changed = room_changed
        self.objects = objects
        self.on_progress = on_progress

    async def process(self, batch: Batch, release_slot: Callable[[], None]) -> None:
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
                self.counters.count_load(outcome.result)
            verdict = judge_batch(batch, rejected)
            self.counters.duplicates_in_batch += verdict.twins_absorbed
            dead_lettered = await self.settler.dead_letter(verdict.dead)
            to_delete = [*verdict.to_delete, *dead_lettered]
            self.held.settle(to_delete)
            if len(to_delete) < len(batch.messages):  # the rest are left to come back
                kept = {m.receipt_handle for m in to_delete}
                self.held.remove(m for m in batch.messages if m.receipt_handle not in kept)
        except Exception:
            # A bug, not an outage: stop holding these messages so they reappear after
            # their visibility timeout instead of being extended forever.
            self.log.exception("process_failed", messages=len(batch.messages))
            self.held.remove(batch.messages)
            to_delete = []
        finally:
            release_slot()
            await self.room_changed()
        try:
            await self.settler.delete(to_delete)
        except Exception:
            self.log.exception("delete_crashed", messages=len(to_delete))
        self.held.remove(to_delete)
        self._progress()
        await self.room_changed()

    async def load_objects(self, announced: ObjectsAnnounced) -> None:
        """The announced objects' rows through the loader; then the message is deleted,
        dead-lettered, or (kept for a retry) no longer extended, so it comes back."""
        assert self.objects is not None  # the pipeline routes here only when it has one
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
            self.held.remove([message])
            self._progress()
        except Exception:
            self.log.exception("objects_failed", message_id=message.message_id)
            self.held.remove([message])
        finally:
            await self.room_changed()

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counters)
