"""Pure logic of dead letters at SQS's limits: fitting, grouping, attributes, degraded state."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sluice.cli.status import status_view
from sluice.errors import FailureReason, PermanentError
from sluice.model import CircuitState, DeadLetter, ReceivedMessage, SettleResult
from sluice.observe.aggregate import ChildScrape, FleetFigures
from sluice.observe.metrics import WorkerMetrics
from sluice.observe.stats import PipelineView, WorkerCounters
from sluice.settle import Settler
from sluice.sources.memory import MemoryQueue
from sluice.sources.sqs_attributes import (
    MAX_ATTRIBUTES,
    SEND_BATCH_BYTES,
    from_raw,
    message_size,
    size_bounded_groups,
)
from sluice.sources.sqs_dlq import fit_letter

names = st.text("abcdefghij_", min_size=1, max_size=12)
values = st.one_of(
    st.tuples(st.just("String"), st.text(min_size=1, max_size=300)),
    st.tuples(st.just("Binary"), st.binary(min_size=1, max_size=300)),
)
attribute_sets = st.dictionaries(names, values, max_size=12).map(
    lambda d: tuple(sorted((k, t, v) for k, (t, v) in d.items()))
)


def letter(body: str, detail: str, attributes: tuple = ()) -> DeadLetter:  # type: ignore[type-arg]
    message = ReceivedMessage("m-1", "h-1", body, 3, 0, attributes)
    return DeadLetter(message, FailureReason.INVALID_JSON, detail)


@settings(max_examples=200, deadline=None)
@given(
    body_len=st.integers(0, 4000),
    detail=st.text(max_size=2000),
    attributes=attribute_sets,
    max_bytes=st.integers(1024, 5000),
)
def test_a_fitted_letter_fits_keeps_the_body_and_sluices_attributes(
    body_len: int,
    detail: str,
    attributes: tuple,
    max_bytes: int,  # type: ignore[type-arg]
) -> None:
    body = "é" * (body_len // 2)
    fitted = fit_letter(letter(body, detail, attributes), "w-1", max_bytes)
    if fitted.outgoing is None:
        assert "too_large" in fitted.refused and str(max_bytes) in fitted.refused
        return
    out = fitted.outgoing
    assert out.body == (body or " ")
    assert out.size <= max_bytes
    assert len(out.attributes) <= MAX_ATTRIBUTES
    assert {n for n in out.attributes if n.startswith("sluice.")} == {
        "sluice.reason",
        "sluice.detail",
        "sluice.source_message_id",
        "sluice.receive_count",
        "sluice.worker",
    }
    assert all(v.get("StringValue", "x") for v in out.attributes.values())
    kept = {n for n in out.attributes if not n.startswith("sluice.")}
    assert kept | set(fitted.dropped) == {a[0] for a in attributes}


def test_the_detail_shrinks_before_any_producer_attribute_goes() -> None:
    attrs = (("trace", "String", "t" * 100),)
    whole = fit_letter(letter("b" * 500, "d" * 1000, attrs), "w", 10_000).outgoing
    assert whole is not None
    budget = whole.size - 600
    fitted = fit_letter(letter("b" * 500, "d" * 1000, attrs), "w", budget).outgoing
    assert fitted is not None and "trace" in fitted.attributes
    assert len(fitted.attributes["sluice.detail"]["StringValue"]) == 400
    assert fitted.size == budget


def test_a_body_that_cannot_fit_is_refused_with_sizes() -> None:
    fitted = fit_letter(letter("x" * 2000, "why"), "w", 1024)
    assert fitted.outgoing is None
    assert "body of 2000 bytes" in fitted.refused and "1024" in fitted.refused


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, SEND_BATCH_BYTES + 10), max_size=40))
def test_groups_keep_order_count_and_payload_bounds(sizes: list[int]) -> None:
    groups = size_bounded_groups(sizes, lambda n: n)
    assert [n for g in groups for n in g] == sizes
    for group in groups:
        assert 1 <= len(group) <= 10
        assert sum(group) <= SEND_BATCH_BYTES or len(group) == 1


@given(st.binary(max_size=200))
def test_binary_attributes_read_the_same_from_both_clients(blob: bytes) -> None:
    botocore = {"b": {"DataType": "Binary", "BinaryValue": blob}}
    wire = {"b": {"DataType": "Binary", "BinaryValue": base64.b64encode(blob).decode()}}
    assert from_raw(botocore) == from_raw(wire) == (("b", "Binary", blob),)
    # Sized by the base64 text (fauxqs's count; AWS's raw bytes are fewer).
    assert message_size("", botocore) == message_size("", wire)


class RefusingDlq:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    async def send(self, letters: Sequence[DeadLetter]) -> SettleResult:
        if self.outcome == "raise":
            raise PermanentError("SQS SendMessageBatch failed: NonExistentQueue")
        if self.outcome == "ok":
            return SettleResult(tuple(x.message for x in letters), ())
        return SettleResult((), tuple((x.message, "InvalidParameterValue: x") for x in letters))


def settle_with(outcome: str, counters: WorkerCounters, now: float) -> list[ReceivedMessage]:
    settler = Settler(
        MemoryQueue(lambda: now),
        RefusingDlq(outcome),
        counters,
        structlog.get_logger("test"),
        clock=lambda: now,
    )
    return asyncio.run(settler.dead_letter([letter("{", "bad"), letter("{{", "bad")]))


def test_failed_sends_are_counted_and_degrade_until_a_send_works() -> None:
    counters = WorkerCounters()
    assert settle_with("raise", counters, 100.0) == []
    assert settle_with("fail", counters, 110.0) == []
    assert counters.dead_letter_send_failures == 4
    assert sum(counters.dead_lettered.values()) == 0
    trouble = counters.dead_letter_trouble(120.0, 300.0)
    assert trouble is not None and "degraded" in trouble and "4 failed" in trouble
    assert counters.dead_letter_trouble(500.0, 300.0) is None  # long ago
    assert len(settle_with("ok", counters, 130.0)) == 2
    assert counters.dead_letter_trouble(131.0, 300.0) is None  # works again


def test_status_names_degraded_workers_from_their_metrics() -> None:
    counters = WorkerCounters(dead_letter_send_failures=3, dead_letter_failed_at=10.0)
    view = PipelineView(counters, 0, None, CircuitState.CLOSED)
    text = WorkerMetrics("w-1", lambda: view, None, clock=lambda: 20.0).render().decode()
    scrape = ChildScrape("w-1", tuple(text_string_to_metric_families(text)))
    fleet = FleetFigures.of([scrape])
    assert fleet.dead_letter_send_failures == 3 and fleet.degraded == ("w-1",)
    doc = {"dead_letters": {"send_failures": 3, "degraded": ["w-1"]}}
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(status_view(doc))
    assert "DEGRADED: failing now on w-1 (3 failed)" in console.export_text()
