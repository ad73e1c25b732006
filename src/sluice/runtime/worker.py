"""One worker process: build the edges from settings, run the pipeline, obey signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog

from sluice.batching import FlushPolicy
from sluice.concurrency import AdaptiveConcurrency, ConcurrencyBounds, ConcurrencyView
from sluice.config import Settings
from sluice.config_sink import require_sink
from sluice.errors import ConfigError, PermanentError, SluiceError, TransientError
from sluice.mapping import TableMapping, load_mapping
from sluice.model import SQS_MAX_MESSAGE_BYTES, CircuitState, StopReason
from sluice.objects.build import build_object_loader
from sluice.observe.http import HttpService, health_app
from sluice.observe.metrics import QueueDepthMonitor, WorkerMetrics
from sluice.observe.stats import DEAD_LETTER_TROUBLE_WINDOW, PipelineView, WorkerCounters
from sluice.pipeline import DRAIN_POLL_WAIT, Pipeline, PipelineOptions
from sluice.policies import ExponentialBackoff
from sluice.runtime.faults import FaultInjector, FaultySink, FaultySource
from sluice.sinks.base import FaultHook, Sink
from sluice.sinks.profiles import PROFILES
from sluice.sources.sqs import SqsQueue, sqs_client
from sluice.sources.sqs_dlq import SqsDeadLetterQueue

STARTUP_ATTEMPTS = 8


@dataclass(frozen=True)
class RunSummary:
    reason: StopReason
    counters: WorkerCounters
    seconds: float


def build_sink(
    settings: Settings,
    mapping: TableMapping,
    faults: FaultHook | None = None,
    credentials: dict[str, str] | None = None,
) -> Sink:
    kind = require_sink(settings)  # never DuckDB for want of a choice
    return PROFILES[kind].build(settings, mapping, faults, credentials)


def pipeline_options(
    s: Settings, *, drain: bool = False, max_message_bytes: int = SQS_MAX_MESSAGE_BYTES
) -> PipelineOptions:
    """The pipeline's options from the settings; ``max_message_bytes`` is the source queue's
    MaximumMessageSize, read at start-up."""
    return PipelineOptions(
        receive_concurrency=s.receive_concurrency,
        max_messages=s.max_messages,
        wait_time_seconds=min(s.wait_time_seconds, DRAIN_POLL_WAIT)
        if drain
        else s.wait_time_seconds,
        visibility_timeout=s.visibility_timeout,
        max_held=s.max_held_messages,
        flush=FlushPolicy(s.batch_max_rows, s.batch_max_bytes, s.batch_max_age),
        load_concurrency=s.effective_load_concurrency,
        shutdown_grace=s.shutdown_grace,
        heartbeat_interval=s.heartbeat_interval,
        stats_interval=s.stats_interval,
        worker_id=s.worker_id,
        backoff=ExponentialBackoff(base=0.2, cap=s.retry_max_backoff),
        drain=drain,
        max_held_bytes=s.max_held_bytes,
        max_message_bytes=max_message_bytes,
        concurrency=concurrency_policy(s),
    )


def concurrency_policy(s: Settings) -> AdaptiveConcurrency:
    """Receives fixed at SLUICE_RECEIVE_CONCURRENCY when given, else adaptive from it up to
    SLUICE_MAX_RECEIVE_CONCURRENCY (and no more polls than the held budget has room for);
    deletes likewise with SLUICE_DELETE_CONCURRENCY and SLUICE_MAX_DELETE_CONCURRENCY."""
    if s.receive_concurrency_given:
        receive = ConcurrencyBounds.fixed(s.receive_concurrency)
    else:
        high = max(1, min(s.max_receive_concurrency, s.max_held_messages // s.max_messages))
        start = min(s.receive_concurrency, high)
        receive = ConcurrencyBounds(min(2, start), high, start)
    if s.delete_concurrency is not None:
        delete = ConcurrencyBounds.fixed(s.delete_concurrency)
    else:
        high = s.max_delete_concurrency
        delete = ConcurrencyBounds(min(2, high), high, min(8, high))
    return AdaptiveConcurrency(receive, delete)


def sqs_pool_size(s: Settings) -> int:
    """Connections enough for every receive and delete in flight at once, plus the loads'
    dead letters and the depth poller: a receive never waits for a connection behind a burst
    of deletes. (Only the heartbeat, all at once while a load runs long, may queue for one.)"""
    policy = concurrency_policy(s)
    return policy.receive.high + policy.delete.high + 2 * s.effective_load_concurrency + 4


def sink_mapping(settings: Settings) -> TableMapping:
    """The mapping, with the limits of the configured warehouse applied."""
    mapping = load_mapping(settings.mapping_file, settings.table_name)
    profile = settings.profile
    if profile is not None and profile.text_limit is not None:
        return mapping.with_text_limit(profile.text_limit)
    return mapping


async def when_reachable(
    what: str,
    attempt_once: Callable[[], Awaitable[object]],
    log: structlog.typing.FilteringBoundLogger,
    stop: asyncio.Event,
) -> bool:
    """Retry a start-up call with backoff: SQS or the warehouse may come up after us.

    True once it answers; False if a stop signal came first (a worker waiting on an outage
    must still stop within its grace). The last TransientError is raised when tries run out.
    """
    backoff = ExponentialBackoff(base=0.5, cap=10.0)
    for attempt in range(STARTUP_ATTEMPTS):
        try:
            return await _unless_stopped(attempt_once(), stop)
        except TransientError as exc:
            if attempt == STARTUP_ATTEMPTS - 1:
                raise
            delay = backoff.delay(attempt)
            log.warning(f"{what}_unavailable", error=str(exc), retry_in=round(delay, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
    return False


def refuse_fifo(settings: Settings) -> None:
    """FIFO queues are refused: Sluice loads in parallel batches, so it cannot keep a
    group's order, and its sends carry no MessageGroupId. One line, at start-up."""
    for name, url in (("SQS_QUEUE_URL", settings.queue_url), ("SLUICE_DLQ_URL", settings.dlq_url)):
        if url and url.rstrip("/").endswith(".fifo"):
            raise ConfigError(
                f"{name}={url} is a FIFO queue: Sluice supports standard queues only "
                "(it loads in parallel and does not keep per-group order)"
            )


async def check_queues(
    client: object,
    source: SqsQueue,
    dlq: SqsDeadLetterQueue | None,
    log: structlog.typing.FilteringBoundLogger,
) -> int:
    """Read the queues' MaximumMessageSize and FifoQueue; return the source's size limit.

    A poll's worth of the source's largest messages is what the pipeline reserves per poll
    in flight (SQS's 1 MiB if the queue does not say); letters are fitted to the DLQ's limit,
    and a DLQ smaller than the source means some messages can never be dead-lettered (said
    once).
    """
    names = ["MaximumMessageSize", "FifoQueue"]
    try:
        ours = await source.attributes(names)
    except SluiceError as exc:
        log.warning("queue_attributes_unavailable", error=str(exc))
        ours = {}
    if dlq is None:
        _refuse_fifo_attribute(ours, "SQS_QUEUE_URL", source.url)
        return _int(ours.get("MaximumMessageSize"))
    try:
        theirs = await SqsQueue(client, dlq.url).attributes(names)
    except PermanentError as exc:
        raise ConfigError(f"SLUICE_DLQ_URL={dlq.url} is not usable: {exc}") from exc
    except TransientError as exc:
        log.warning("dlq_attributes_unavailable", error=str(exc))
        return _int(ours.get("MaximumMessageSize"))
    _refuse_fifo_attribute(ours, "SQS_QUEUE_URL", source.url)
    _refuse_fifo_attribute(theirs, "SLUICE_DLQ_URL", dlq.url)
    source_max = _int(ours.get("MaximumMessageSize"))
    dlq_max = _int(theirs.get("MaximumMessageSize"))
    dlq.max_bytes = dlq_max
    if dlq_max < source_max:
        log.warning(
            "dlq_smaller_than_queue",
            note=f"SLUICE_DLQ_URL MaximumMessageSize {dlq_max} < SQS_QUEUE_URL "
            f"MaximumMessageSize {source_max}: bad messages over {dlq_max} bytes cannot be "
            "dead-lettered and are left to the redrive policy",
        )
    return source_max


def _refuse_fifo_attribute(attrs: dict[str, str], name: str, url: str) -> None:
    if attrs.get("FifoQueue") == "true":
        raise ConfigError(
            f"{name}={url} is a FIFO queue: Sluice supports standard queues only "
            "(it loads in parallel and does not keep per-group order)"
        )


def _int(text: str | None) -> int:
    try:
        return int(text) if text else SQS_MAX_MESSAGE_BYTES
    except ValueError:
        return SQS_MAX_MESSAGE_BYTES


async def _unless_stopped(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Await ``work`` unless ``stop`` is set first (then cancel it and return False)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        task.result()  # raises what the attempt raised
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


def install_signal_handlers(
    stop: asyncio.Event, log: structlog.typing.FilteringBoundLogger
) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: exit at once (SQS keeps the messages)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second_signal_exiting_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, metrics: WorkerMetrics, depths: QueueDepthMonitor, pipeline: Pipeline
) -> AsyncIterator[None]:
    """Poll queue depths and serve /metrics, /healthz, /readyz on PORT (0: no HTTP)."""

    async def readiness() -> list[str]:
        problems = []
        if not depths.reachable():
            problems.append("SQS: GetQueueAttributes has not answered lately")
        if pipeline.breaker.state is not CircuitState.CLOSED:
            problems.append(f"warehouse: circuit {pipeline.breaker.state.value} (loads failing)")
        trouble = pipeline.counters.dead_letter_trouble(
            time.monotonic(), DEAD_LETTER_TROUBLE_WINDOW
        )
        if trouble is not None:
            problems.append(f"DLQ: {trouble}")
        return problems

    async def render() -> bytes:
        return metrics.render()

    poller = asyncio.create_task(depths.run(), name="queue-depth")
    server = HttpService(health_app(render, readiness)) if settings.port else None
    if server is not None:
        await server.start_tcp(settings.http_host, settings.port)
    try:
        yield
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        if server is not None:
            await server.stop()


async def run_worker(
    settings: Settings,
    *,
    drain: bool = False,
    stop: asyncio.Event | None = None,
    credentials: dict[str, str] | None = None,
    on_progress: Callable[[WorkerCounters], None] | None = None,
    handle_signals: bool = True,
) -> RunSummary:
    log = structlog.get_logger("sluice.worker").bind(worker=settings.worker_id)
    if not settings.queue_url:
        raise ConfigError("SQS_QUEUE_URL is required: the URL of the queue to drain")
    refuse_fifo(settings)
    started = time.monotonic()
    stop = stop or asyncio.Event()
    if handle_signals:
        install_signal_handlers(stop, log)
    mapping = sink_mapping(settings)
    faults = FaultInjector(settings.fault_point, settings.fault_after)
    sink = build_sink(settings, mapping, faults, credentials)
    pool = sqs_pool_size(settings)
    async with sqs_client(
        settings.aws_region, settings.sqs_endpoint_url, pool, credentials, settings.sqs_client
    ) as client:
        source = SqsQueue(client, settings.queue_url)
        try:
            reachable = await when_reachable("queue", source.depth, log, stop)
        except PermanentError as exc:
            raise ConfigError(f"SQS_QUEUE_URL={settings.queue_url} is not usable: {exc}") from exc
        dlq = (
            SqsDeadLetterQueue(client, settings.dlq_url, settings.worker_id)
            if settings.dlq_url
            else None
        )
        max_message_bytes = (
            await check_queues(client, source, dlq, log) if reachable else SQS_MAX_MESSAGE_BYTES
        )
        # S3 event notifications name objects whose rows are loaded (docs/data-locker.md).
        objects = build_object_loader(settings, mapping, dlq, credentials)
        try:
            if not (reachable and await when_reachable("warehouse", sink.open, log, stop)):
                log.info("stopped", reason=StopReason.SIGNALLED.value, during="start-up")
                return RunSummary(
                    StopReason.SIGNALLED, WorkerCounters(), time.monotonic() - started
                )
            await sink.check_schema()
            depths = QueueDepthMonitor(
                source,
                SqsQueue(client, settings.dlq_url) if settings.dlq_url else None,
                settings.queue_attributes_interval,
            )

            def view() -> PipelineView:  # late-bound: the pipeline needs the metrics first
                return pipeline.view()

            def concurrency() -> ConcurrencyView:
                return pipeline.concurrency_view()

            metrics = WorkerMetrics(settings.worker_id, view, depths, concurrency=concurrency)
            faulty = settings.fault_point is not None  # the fault suite's crash points
            pipeline = Pipeline(
                FaultySource(source, faults) if faulty else source,
                FaultySink(sink, faults) if faulty else sink,
                dlq,
                mapping,
                pipeline_options(settings, drain=drain, max_message_bytes=max_message_bytes),
                on_progress=on_progress,
                on_loaded=metrics.observe_load,
                objects=objects,
            )
            log.info(
                "started",
                queue=settings.queue_url,
                sink=settings.sink_value,
                **(
                    {"sink_inferred_from": settings.sink_inferred_from}
                    if settings.sink_inferred_from
                    else {}
                ),
                table=mapping.table,
                drain=drain,
                dlq=bool(dlq),
            )
            async with serving(settings, metrics, depths, pipeline):
                reason = await pipeline.run(stop)
        finally:
            await objects.close()
            await sink.close()
    log.info("stopped", reason=reason.value)
    return RunSummary(reason, pipeline.counters, time.monotonic() - started)
