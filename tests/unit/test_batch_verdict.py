"""judge_batch: what a loaded batch leaves to delete and to dead-letter. Pure."""

from __future__ import annotations

from sluice.batching import Batch
from sluice.errors import FailureReason
from sluice.model import DeadLetter, Ignored, MappedRow, ReceivedMessage
from sluice.settle import judge_batch


def message(n: int) -> ReceivedMessage:
    return ReceivedMessage(f"m-{n}", f"h-{n}", "{}", 1, 0)


def row(n: int, key: str) -> MappedRow:
    return MappedRow(message(n), key, ())


def batch_of(*items: MappedRow | DeadLetter | Ignored) -> Batch:
    batch = Batch(opened_at=0.0)
    for item in items:
        batch.add(item, 0.0)
    return batch


def test_a_committed_batch_deletes_rows_twins_and_ignored_and_dead_letters_decode_failures() -> (
    None
):
    bad = DeadLetter(message(4), FailureReason.INVALID_JSON, "x")
    batch = batch_of(row(1, "a"), row(2, "b"), row(3, "a"), bad, Ignored(message(5), "test"))
    verdict = judge_batch(batch, [])
    assert {m.message_id for m in verdict.to_delete} == {"m-1", "m-2", "m-3", "m-5"}
    assert verdict.dead == (bad,)
    assert verdict.twins_absorbed == 1


def test_a_refused_row_takes_its_twins_to_the_dlq() -> None:
    batch = batch_of(row(1, "a"), row(2, "b"), row(3, "a"))
    refused = DeadLetter(message(1), FailureReason.REJECTED_BY_WAREHOUSE, "refused")
    verdict = judge_batch(batch, [refused])
    assert [m.message_id for m in verdict.to_delete] == ["m-2"]
    assert [(d.message.message_id, d.reason) for d in verdict.dead] == [
        ("m-1", FailureReason.REJECTED_BY_WAREHOUSE),
        ("m-3", FailureReason.REJECTED_BY_WAREHOUSE),
    ]
    assert verdict.twins_absorbed == 0
