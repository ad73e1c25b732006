"""What one Lambda execution environment keeps between invocations.

Built at the first invocation, never at import: the settings from the worker's environment
variables (``config.load_settings``, the same builder and the same one-line errors), the
mapping, the sink (its connection is reused by every later invocation and re-made when
stale: the loader's next attempt reconnects), the SQS client that sends dead letters, and
the one event loop they are all bound to (``asyncio.run`` per invocation would close it,
and every connection with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import orjson
import structlog

from sluice.aws_lambda.budget import InvocationBudget, remaining_seconds
from sluice.aws_lambda.emf import Counts, InvocationReport, emf_document
from sluice.aws_lambda.events import LambdaContext, batch_response, in_order, messages_of
from sluice.aws_lambda.invocation import Invocation, Outcome
from sluice.batching import FlushPolicy
from sluice.config import Settings, load_settings
from sluice.errors import ConfigError, PermanentError, TransientError
from sluice.mapping import TableMapping
from sluice.model import SQS_MAX_MESSAGE_BYTES, ReceivedMessage
from sluice.observe.logging import configure_logging
from sluice.observe.stats import StatsLine, WorkerCounters
from sluice.policies import ExponentialBackoff
from sluice.runtime.worker import build_sink, refuse_fifo, sink_mapping
from sluice.sinks.base import Sink
from sluice.sources.sqs import SqsQueue, sqs_client
from sluice.sources.sqs_dlq import SqsDeadLetterQueue

SinkFactory = Callable[[Settings, TableMapping], Sink]
Response = dict[str, list[dict[str, str]]]


def write_line(line: str) -> None:
    """EMF lines go to stdout, which Lambda sends to CloudWatch Logs as they are."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def lambda_settings(settings: Settings) -> Settings:
    """One warehouse connection per execution environment: an invocation loads its batches
    one after another, and the warehouse sees at most MaximumConcurrency connections."""
    return dataclasses.replace(settings, load_concurrency=1)


class LambdaContainer:
    """One execution environment's state; ``handle`` serves one invocation."""

    def __init__(
        self,
        settings: Settings,
        *,
        sink_factory: SinkFactory | None = None,
        credentials: dict[str, str] | None = None,
        emit: Callable[[str], None] = write_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        refuse_fifo(settings)
        self.settings = lambda_settings(settings)
        self.mapping = sink_mapping(self.settings)
        factory = sink_factory or (lambda s, m: build_sink(s, m, None, credentials))
        self.sink = factory(self.settings, self.mapping)
        self.credentials = credentials
        self.emit = emit
        self.clock = clock
        self.counters = WorkerCounters()  # since the environment started, for the stats
        self.stats = StatsLine(self.settings.worker_id, clock, clock())
        self.log = structlog.get_logger("sluice.lambda").bind(worker=self.settings.worker_id)
        self.loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        self._dlq: SqsDeadLetterQueue | None = None
        self._ready = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str], **kwargs: object) -> LambdaContainer:
        """The container for the function's variables (ConfigError names a bad one)."""
        settings = load_settings(env)
        configure_logging(settings.log_format, settings.log_level, sys.stdout)
        return cls(settings, **kwargs)  # type: ignore[arg-type]

    @property
    def flush(self) -> FlushPolicy:
        s = self.settings
        return FlushPolicy(s.batch_max_rows, s.batch_max_bytes, s.batch_max_age)

    def handle(self, event: object, context: LambdaContext) -> Response:
        return self.loop.run_until_complete(self._handle(event, context))

    def close(self) -> None:
        """Close the sink and the SQS client, then the loop (tests; Lambda just freezes)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.run_until_complete(self._close())
        finally:
            self.loop.close()

    async def _close(self) -> None:
        try:
            await self.sink.close()
        finally:
            await self._stack.aclose()

    async def _open(self) -> None:
        """Once per environment (again after a failed try): the DLQ client, the warehouse,
        the table. TransientError: try again next invocation; SchemaError and ConfigError:
        the invocation fails whole, with one line."""
        if self._ready:
            return
        s = self.settings
        if s.dlq_url and self._dlq is None:
            client = await self._stack.enter_async_context(
                sqs_client(s.aws_region, s.sqs_endpoint_url, 4, self.credentials, s.sqs_client)
            )
            dlq = SqsDeadLetterQueue(client, s.dlq_url, s.worker_id)
            dlq.max_bytes = await self._dlq_limit(SqsQueue(client, s.dlq_url))
            self._dlq = dlq
        await self.sink.open()
        await self.sink.check_schema()
        self._ready = True
        self.log.info("ready", sink=s.sink_value, table=self.mapping.table, dlq=bool(s.dlq_url))

    async def _dlq_limit(self, dlq: SqsQueue) -> int:
        try:
            attrs = await dlq.attributes(["MaximumMessageSize", "FifoQueue"])
        except PermanentError as exc:
            raise ConfigError(f"SLUICE_DLQ_URL={dlq.url} is not usable: {exc}") from exc
        if attrs.get("FifoQueue") == "true":
            raise ConfigError(f"SLUICE_DLQ_URL={dlq.url} is a FIFO queue: standard queues only")
        return int(attrs.get("MaximumMessageSize") or 0) or SQS_MAX_MESSAGE_BYTES

    async def _handle(self, event: object, context: LambdaContext) -> Response:
        started = self.clock()
        messages = messages_of(event)
        before = Counts.of(self.counters)
        try:
            await self._open()
        except TransientError as exc:
            self.log.warning("warehouse_unavailable", error=str(exc), records=len(messages))
            self.counters.received += len(messages)
            self.counters.load_failures += 1
            outcome = Outcome(tuple(messages), 0)
        else:
            outcome = await self._invocation(context).run(messages)
        failed = in_order(messages, outcome.failed)
        self._report(context, before, failed, outcome.not_reached, self.clock() - started)
        return batch_response(failed)

    def _invocation(self, context: LambdaContext) -> Invocation:
        budget = InvocationBudget(remaining_seconds(context.get_remaining_time_in_millis))
        return Invocation(
            self.sink,
            self._dlq,
            self.mapping,
            flush=self.flush,
            budget=budget,
            counters=self.counters,
            backoff=ExponentialBackoff(base=0.2, cap=self.settings.retry_max_backoff),
            log=self.log.bind(request=context.aws_request_id),
        )

    def _report(
        self,
        context: LambdaContext,
        before: Counts,
        failed: Sequence[ReceivedMessage],
        not_reached: int,
        seconds: float,
    ) -> None:
        report = InvocationReport(
            Counts.of(self.counters).since(before), len(failed), not_reached, seconds
        )
        document = emf_document(
            report,
            function_name=context.function_name,
            request_id=context.aws_request_id,
            timestamp_ms=int(time.time() * 1000),
            stats=self.stats.render(self.counters, 0),
        )
        self.emit(orjson.dumps(document).decode())
