"""Test-only crash points (SLUICE_FAULT_POINT): SIGKILL ourselves at a named step.

Lets the fault suite kill a worker exactly between load and commit, or between commit and
delete, which an external kill could only hit by luck. Fault injection wraps the real edges,
as middleware would: ``FaultySource`` and ``FaultySink`` stand around the queue and the
warehouse, so the pipeline knows nothing of crash points. Only the points inside a warehouse
transaction (mid-staging, before COMMIT) are reached from within the sinks.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from sluice.faultpoints import FaultHook, FaultPoint
from sluice.model import LoadResult, MappedRow, ReceivedMessage, SettleResult
from sluice.sinks.base import Sink
from sluice.sinks.schema_plan import SchemaPlan
from sluice.sources.base import QueueDepth, Source


class FaultInjector:
    """SIGKILLs this process the ``after``-th time ``point`` is reached."""

    def __init__(self, point: FaultPoint | None, after: int = 1) -> None:
        self._point = point
        self._after = after
        self._seen = 0

    def hit(self, point: FaultPoint) -> None:
        if point is not self._point:
            return
        self._seen += 1
        if self._seen >= self._after:
            os.kill(os.getpid(), signal.SIGKILL)


class FaultySource:
    """A Source that reaches AFTER_RECEIVE once a receive brought messages, and MID_DELETE
    between the first ten deletes of a call and the rest (two DeleteMessageBatch calls)."""

    def __init__(self, source: Source, faults: FaultHook) -> None:
        self._source = source
        self._faults = faults

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        messages = await self._source.receive(max_messages, wait_seconds, visibility_timeout)
        if messages:
            self._faults.hit(FaultPoint.AFTER_RECEIVE)
        return messages

    async def delete(self, messages: Sequence[ReceivedMessage]) -> SettleResult:
        head = await self._source.delete(messages[:10])
        self._faults.hit(FaultPoint.MID_DELETE)
        if len(messages) <= 10:
            return head
        tail = await self._source.delete(messages[10:])
        return SettleResult(head.succeeded + tail.succeeded, head.failed + tail.failed)

    async def change_visibility(
        self, messages: Sequence[ReceivedMessage], seconds: int
    ) -> SettleResult:
        return await self._source.change_visibility(messages, seconds)

    async def depth(self) -> QueueDepth:
        return await self._source.depth()


class FaultySink:
    """A Sink that reaches AFTER_COMMIT once a load has committed."""

    def __init__(self, sink: Sink, faults: FaultHook) -> None:
        self._sink = sink
        self._faults = faults

    async def open(self) -> None:
        await self._sink.open()

    async def create_table(self) -> bool:
        return await self._sink.create_table()

    async def check_schema(self) -> None:
        await self._sink.check_schema()

    async def plan_schema(self) -> SchemaPlan:
        return await self._sink.plan_schema()

    async def apply_schema(self, plan: SchemaPlan) -> None:
        await self._sink.apply_schema(plan)

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        result = await self._sink.load(rows)
        self._faults.hit(FaultPoint.AFTER_COMMIT)
        return result

    async def count_rows(self) -> int:
        return await self._sink.count_rows()

    async def drop_table(self) -> None:
        await self._sink.drop_table()

    async def close(self) -> None:
        await self._sink.close()
