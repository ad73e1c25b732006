"""Prometheus metrics of one worker, in a registry of its own (no process globals).

Counters are read from the pipeline's ``WorkerCounters`` at scrape time, so the hot path
pays nothing for them; only the load histograms are observed as loads finish. Queue depths
come from a ``QueueDepthMonitor`` that calls GetQueueAttributes at most once per interval,
so a hundred workers do not hammer SQS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sluice.concurrency import ConcurrencyView, ReceiveReason
from sluice.errors import SluiceError
from sluice.model import CircuitState
from sluice.observe.stats import DEAD_LETTER_TROUBLE_WINDOW, PipelineView
from sluice.sources.base import QueueDepth, Source

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QueueDepthMonitor:
    """Polls GetQueueAttributes for the queue (and DLQ) every ``interval`` seconds."""

    def __init__(
        self,
        source: Source,
        dlq: Source | None,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.dlq = dlq
        self.interval = interval
        self.clock = clock
        self.queue: QueueDepth | None = None
        self.dead_letters: QueueDepth | None = None
        self.last_success: float | None = None
        self.log = structlog.get_logger("sluice.metrics")

    async def poll_once(self) -> None:
        try:
            self.queue = await self.source.depth()
            self.last_success = self.clock()
        except SluiceError as exc:
            self.log.warning("queue_depth_failed", error=str(exc))
        if self.dlq is None:
            return
        # Apart: a DLQ that does not answer is not the source being unreachable (failed
        # dead-letter sends report that, as "degraded").
        try:
            self.dead_letters = await self.dlq.depth()
        except SluiceError as exc:
            self.dead_letters = None
            self.log.warning("dlq_depth_failed", error=str(exc))

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    def reachable(self) -> bool:
        """The queue answered within the last three intervals."""
        return self.last_success is not None and (
            self.clock() - self.last_success <= 3 * self.interval
        )


class WorkerMetrics:
    def __init__(
        self,
        worker_id: str,
        view: Callable[[], PipelineView],
        depths: QueueDepthMonitor | None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        *,
        concurrency: Callable[[], ConcurrencyView] | None = None,
    ) -> None:
        # No auto-describe: it would collect at registration, before the pipeline exists.
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_rows = Histogram(
            "sluice_batch_rows",
            "Rows per warehouse load.",
            ["worker"],
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
            registry=self.registry,
        ).labels(worker_id)
        self.load_seconds = Histogram(
            "sluice_load_seconds",
            "Seconds per committed warehouse load.",
            ["worker"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        ).labels(worker_id)
        self.registry.register(_PipelineCollector(worker_id, view, depths, wall_clock, clock))
        if concurrency is not None:
            self.registry.register(_ConcurrencyCollector(worker_id, concurrency))

    def observe_load(self, rows: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.load_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PipelineCollector(Collector):
    def __init__(
        self,
        worker: str,
        view: Callable[[], PipelineView],
        depths: QueueDepthMonitor | None,
        wall_clock: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.worker = worker
        self.view = view
        self.depths = depths
        self.wall_clock = wall_clock
        self.clock = clock

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        v = self.view()
        c = v.counters
        w = self.worker
        messages = CounterMetricFamily(
            "sluice_messages", "Messages by outcome.", labels=["worker", "outcome"]
        )
        for outcome, count in (
            ("received", c.received),
            ("loaded", c.inserted),
            ("duplicate", c.duplicates),
            ("dead_lettered", sum(c.dead_lettered.values())),
            ("failed", sum(c.left_to_redrive.values())),
            ("ignored", c.ignored),
            ("deleted", c.deleted),
            ("released", c.released),
        ):
            messages.add_metric([w, outcome], count)
        yield messages
        reasons = CounterMetricFamily(
            "sluice_dead_letters", "Dead letters by reason.", labels=["worker", "reason"]
        )
        for reason, count in (c.dead_lettered + c.left_to_redrive).items():
            reasons.add_metric([w, reason.value], count)
        yield reasons
        errors = CounterMetricFamily(
            "sluice_errors", "Failed operations by kind.", labels=["worker", "kind"]
        )
        for kind, count in (
            ("load", c.load_failures),
            ("receive", c.receive_errors),
            ("delete", c.delete_failures),
            ("visibility", c.visibility_failures),
        ):
            errors.add_metric([w, kind], count)
        yield errors
        failures = CounterMetricFamily(
            "sluice_dead_letter_send_failures",
            "Dead letters the DLQ did not take (the message stays on the queue).",
            labels=["worker"],
        )
        failures.add_metric([w], c.dead_letter_send_failures)
        yield failures
        trouble = c.dead_letter_trouble(self.clock(), DEAD_LETTER_TROUBLE_WINDOW)
        yield _gauge(
            "sluice_dead_letter_degraded",
            "1 while dead-letter sends fail (within 5 minutes, none working since).",
            w,
            0.0 if trouble is None else 1.0,
        )
        receives = CounterMetricFamily(
            "sluice_receives",
            "ReceiveMessage calls by what they brought: what an idle worker costs in requests.",
            labels=["worker", "result"],
        )
        for result, count in (
            ("messages", c.receives_with_messages),
            ("empty", c.empty_receives),
            ("error", c.receive_errors),
        ):
            receives.add_metric([w, result], count)
        yield receives
        yield _gauge("sluice_messages_held", "Messages received and not yet settled.", w, v.held)
        yield _gauge(
            "sluice_message_bytes_held",
            "Bytes of the bodies held (the bound is bytes too).",
            w,
            v.held_bytes,
        )
        age = GaugeMetricFamily(
            "sluice_oldest_message_age_seconds",
            "Age of the oldest held message, from SentTimestamp.",
            labels=["worker"],
        )
        if v.oldest_sent_ms:
            age.add_metric([w], max(0.0, self.wall_clock() - v.oldest_sent_ms / 1000))
        else:
            age.add_metric([w], 0.0)
        yield age
        circuit = GaugeMetricFamily(
            "sluice_circuit_state",
            "1 for the circuit breaker's current state.",
            labels=["worker", "state"],
        )
        for state in CircuitState:
            circuit.add_metric([w, state.value], 1.0 if state is v.circuit else 0.0)
        yield circuit
        yield from self._depths(w)

    def _depths(self, w: str) -> Iterator[GaugeMetricFamily]:
        if self.depths is None or self.depths.queue is None:
            return
        queue = GaugeMetricFamily(
            "sluice_queue_messages",
            "Source queue depth from GetQueueAttributes.",
            labels=["worker", "state"],
        )
        d = self.depths.queue
        for state, count in (
            ("visible", d.visible),
            ("in_flight", d.in_flight),
            ("delayed", d.delayed),
        ):
            queue.add_metric([w, state], count)
        yield queue
        if self.depths.dead_letters is not None:
            yield _gauge(
                "sluice_dlq_messages",
                "Messages in the dead-letter queue.",
                w,
                self.depths.dead_letters.total,
            )


class _ConcurrencyCollector(Collector):
    """The adaptive concurrency policy's current counts, and what is in flight."""

    def __init__(self, worker: str, view: Callable[[], ConcurrencyView]) -> None:
        self.worker = worker
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        v = self.view()
        w = self.worker
        yield _gauge(
            "sluice_receive_concurrency",
            "Receives (long polls) the worker keeps in flight now: the adaptive policy's count.",
            w,
            v.receive,
        )
        yield _gauge(
            "sluice_delete_concurrency",
            "DeleteMessageBatch calls allowed in flight now.",
            w,
            v.delete,
        )
        yield _gauge(
            "sluice_receives_in_flight",
            "ReceiveMessage calls in flight (1 while the queue is empty: the scout).",
            w,
            v.polls_in_flight,
        )
        yield _gauge("sluice_deletes_in_flight", "Settle calls in flight.", w, v.deletes_in_flight)
        yield _gauge(
            "sluice_messages_settling",
            "Messages committed and waiting for their delete (not counted against the budget).",
            w,
            v.settling,
        )
        reason = GaugeMetricFamily(
            "sluice_receive_concurrency_reason",
            "1 for why the receive count is what it is (the policy's last decision).",
            labels=["worker", "reason"],
        )
        for each in ReceiveReason:
            reason.add_metric([w, each.value], 1.0 if each is v.reason else 0.0)
        yield reason


def _gauge(name: str, text: str, worker: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=["worker"])
    family.add_metric([worker], value)
    return family
