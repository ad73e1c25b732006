"""Several worker processes on one host (the role PM2 cluster mode plays), scaled by depth.

The supervisor consumes nothing itself. It keeps ``desired`` children running (each one a
plain ``sluice run`` with its own WORKER_ID and a loopback metrics port), restarts a child
that dies with capped, jittered backoff, asks the ``AutoscalePolicy`` what ``desired``
should be every ``SLUICE_QUEUE_ATTRIBUTES_INTERVAL`` seconds, serves its children's metrics
together on PORT, and stops them all gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import aiohttp
import structlog

from sluice.config import Settings
from sluice.errors import ConfigError, PermanentError, SluiceError
from sluice.local.emulator import free_port
from sluice.observe.aggregate import ChildEndpoint, ChildScrape, FleetFigures, scrape_children
from sluice.observe.rates import RateHistory, ResettingCounters, Sample
from sluice.policies import ExponentialBackoff
from sluice.runtime.fleet import ChildState, WorkerProcess, start_worker_process
from sluice.runtime.control import supervisor_endpoints
from sluice.runtime.worker import install_signal_handlers, refuse_fifo, when_reachable
from sluice.scaling import (
    ScaleDirection,
    ScaleReason,
    ScalingDecision,
    ScalingInputs,
    ScalingMemory,
)
from sluice.sources.base import QueueDepth
from sluice.sources.sqs import SqsQueue, sqs_client

STABLE_AFTER = 60.0  # a child up this long has its restart backoff forgotten
SAMPLE_INTERVAL = 5.0  # children scraped for the throughput history at most this often
KILL_MARGIN = 5.0  # beyond the children's own grace before they are SIGKILLed


@dataclass(frozen=True)
class SupervisorSummary:
    started: int  # worker processes started, restarts included
    restarts: int
    scale_events: int


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        drain: bool,
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.drain = drain
        self.env = dict(env)
        self.clock = clock
        self.policy = settings.autoscale_policy
        self.autoscaling = settings.autoscale is not None
        self.desired = self.policy.min_workers
        self.pinned: int | None = None  # `sluice scale N`: overrides the policy until `auto`
        self.children: dict[int, WorkerProcess] = {}
        self.restarting: dict[int, asyncio.Task[None]] = {}
        self.failures: dict[int, int] = {}  # slot -> consecutive crashes
        self.backoff = ExponentialBackoff(base=1.0, cap=settings.restart_max_backoff, floor=0.2)
        self.memory = ScalingMemory()
        self.last_decision: ScalingDecision | None = None
        self.queue: QueueDepth | None = None
        self.dead_letters: QueueDepth | None = None
        self.queue_seen_at: float | None = None
        self.fleet = FleetFigures({}, None, 0)
        self.processed = ResettingCounters()
        self.history = RateHistory(horizon=300.0)
        self.started = 0
        self.restarts = 0
        self.scale_events: dict[str, int] = {}
        # A child finished a --drain run: the queue was empty. Crashed workers are still
        # restarted (SQS gives their messages back and someone must load them).
        self.drained = False
        self.http: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._watchers: set[asyncio.Task[None]] = set()
        self.log = structlog.get_logger("sluice.supervisor").bind(worker=settings.worker_id)

    # ---- the main loop -------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, credentials: dict[str, str] | None = None
    ) -> SupervisorSummary:
        install_signal_handlers(stop, self.log)
        if not self.settings.queue_url:
            raise ConfigError("SQS_QUEUE_URL is required: the URL of the queue to drain")
        refuse_fifo(self.settings)
        async with (
            sqs_client(
                self.settings.aws_region,
                self.settings.sqs_endpoint_url,
                4,
                credentials,
                self.settings.sqs_client,
            ) as client,
            aiohttp.ClientSession() as http,
        ):
            self.http = http
            source = SqsQueue(client, self.settings.queue_url)
            dlq = SqsQueue(client, self.settings.dlq_url) if self.settings.dlq_url else None
            try:
                if not await when_reachable("queue", source.depth, self.log, stop):
                    return self.summary()
            except PermanentError as exc:
                raise ConfigError(
                    f"SQS_QUEUE_URL={self.settings.queue_url} is not usable: {exc}"
                ) from exc
            self.log.info(
                "supervisor_started",
                mode=self.mode,
                desired=self.desired,
                drain=self.drain,
                pid=os.getpid(),
            )
            await self._poll_depth(source, dlq)
            async with supervisor_endpoints(self):
                await self._supervise(source, dlq, stop)
        return self.summary()

    async def _supervise(self, source: SqsQueue, dlq: SqsQueue | None, stop: asyncio.Event) -> None:
        loops = [
            asyncio.create_task(self._depth_loop(source, dlq), name="depth"),
            asyncio.create_task(self._sample_loop(), name="samples"),
        ]
        try:
            await self._keep_children(stop)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._stop_all()

    @property
    def mode(self) -> str:
        if self.autoscaling:
            return f"autoscale {self.policy.min_workers}:{self.policy.max_workers}"
        return f"fixed {self.desired}"

    def summary(self) -> SupervisorSummary:
        return SupervisorSummary(self.started, self.restarts, sum(self.scale_events.values()))

    async def _keep_children(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before reconciling, so a change made meanwhile (a child exiting while
            # another starts) wakes the next round instead of being lost.
            self._changed.clear()
            await self._reconcile()
            if self.drain and self.drained and not self.children and not self.restarting:
                self.log.info("supervisor_drained")
                return
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._changed.wait()),
            ]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    # ---- children --------------------------------------------------------------------

    def active_slots(self) -> set[int]:
        running = {s for s, c in self.children.items() if c.state is ChildState.RUNNING}
        return running | set(self.restarting)

    async def _reconcile(self) -> None:
        async with self._lock:
            active = self.active_slots()
            target = self.target_count()
            if self.drained:
                # The queue was seen empty: start nobody new, and stop nobody either; each
                # worker left exits once it has settled what it holds and sees the queue empty.
                return
            for _ in range(target - len(active)):
                await self._start(self._free_slot())
            if self.drain:
                return  # a --drain run ends by draining, not by scale-in
            for slot in sorted(active, reverse=True)[: max(0, len(active) - target)]:
                if slot in self.restarting:
                    self.restarting.pop(slot).cancel()
                else:
                    self.log.info("worker_stopping", worker=self.children[slot].worker_id)
                    self.children[slot].terminate()

    def target_count(self) -> int:
        return self.pinned if self.pinned is not None else self.desired

    def _free_slot(self) -> int:
        taken = set(self.children) | set(self.restarting)
        return next(slot for slot in range(1, len(taken) + 2) if slot not in taken)

    async def _start(self, slot: int) -> None:
        child = await start_worker_process(
            self.settings, self.env, slot, free_port(), drain=self.drain
        )
        self.children[slot] = child
        self.started += 1
        # Held here: the event loop keeps only weak references to tasks.
        watcher = asyncio.create_task(self._watch(child), name=f"watch-{child.worker_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, child: WorkerProcess) -> None:
        code = await child.process.wait()
        lived = self.clock() - child.started_at
        self.children.pop(child.slot, None)
        expected = child.state is ChildState.STOPPING
        finished = self.drain and code == 0
        report = self.log.info if expected or finished else self.log.error
        report(
            "worker_exited",
            worker=child.worker_id,
            pid=child.pid,
            code=code,
            expected=expected,
            lived=round(lived, 1),
        )
        if finished:
            self.drained = True
        elif not expected:
            self._schedule_restart(child.slot, lived)
        self._changed.set()

    def _schedule_restart(self, slot: int, lived: float) -> None:
        failures = 0 if lived >= STABLE_AFTER else self.failures.get(slot, 0) + 1
        self.failures[slot] = failures
        delay = self.backoff.delay(failures - 1) if failures else 0.0
        self.log.warning("worker_restart_scheduled", slot=slot, delay=round(delay, 2))
        self.restarting[slot] = asyncio.create_task(self._restart_after(slot, delay))

    async def _restart_after(self, slot: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            self.restarting.pop(slot, None)
            if slot in self.children:
                return
            await self._start(slot)
            self.restarts += 1

    async def _stop_all(self) -> None:
        for task in self.restarting.values():
            task.cancel()
        self.restarting.clear()
        children = list(self.children.values())
        if not children:
            return
        self.log.info("stopping_workers", count=len(children))
        for child in children:
            child.terminate()
        waits = [asyncio.ensure_future(child.process.wait()) for child in children]
        _, pending = await asyncio.wait(waits, timeout=self.settings.shutdown_grace + KILL_MARGIN)
        for child in children:
            if child.process.returncode is None:
                self.log.error("worker_killed_after_grace", worker=child.worker_id)
                child.kill()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        # Let the watchers log the exits they are owed before the loop closes.
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=5.0)

    # ---- queue depth, throughput, scaling ------------------------------------------

    async def _depth_loop(self, source: SqsQueue, dlq: SqsQueue | None) -> None:
        while True:
            await asyncio.sleep(self.settings.queue_attributes_interval)
            await self._poll_depth(source, dlq)

    async def _poll_depth(self, source: SqsQueue, dlq: SqsQueue | None) -> None:
        try:
            self.queue = await source.depth()
            self.dead_letters = await dlq.depth() if dlq is not None else None
            self.queue_seen_at = self.clock()
        except SluiceError as exc:
            self.log.warning("queue_depth_failed", error=str(exc))
            self.queue = None
        if self.autoscaling:
            self.apply(await self._decide())

    async def _decide(self) -> ScalingDecision:
        current = len(self.active_slots())
        if self.queue is None:
            return self.policy.no_data(current)
        await self.refresh_fleet()
        inputs = ScalingInputs(self.queue.visible, self.fleet.oldest_age, current)
        if self.pinned is not None:
            wanted = self.policy.wanted(inputs.backlog, inputs.oldest_age, current)
            return ScalingDecision(
                ScaleDirection.HOLD, self.pinned, ScaleReason.MANUAL, inputs, wanted
            )
        decision, self.memory = self.policy.decide(inputs, self.memory, self.clock())
        return decision

    def apply(self, decision: ScalingDecision) -> None:
        self.last_decision = decision
        self.log.info("scale_decision", **decision.describe())
        if decision.direction is not ScaleDirection.HOLD:
            self.desired = decision.desired
            key = decision.direction.value
            self.scale_events[key] = self.scale_events.get(key, 0) + 1
            self._changed.set()

    def scale_to(self, count: int | None) -> None:
        """`sluice scale N` pins the count; `sluice scale auto` (None) hands back to the policy."""
        self.pinned = count
        if count is not None and not self.autoscaling:
            self.desired = count
        if count is None:
            # The policy takes over from the count running now, as from any change: its
            # cooldowns and its gradual scale-in apply, rather than a jump to its last figure.
            self.desired = len(self.active_slots())
            self.memory = replace(self.memory, last_change=self.clock())
        self.log.warning("scale_pinned" if count is not None else "scale_unpinned", workers=count)
        self._changed.set()

    async def _sample_loop(self) -> None:
        interval = min(SAMPLE_INTERVAL, self.settings.queue_attributes_interval)
        while True:
            await self.refresh_fleet()
            await asyncio.sleep(interval)

    async def refresh_fleet(self) -> None:
        children = list(self.children.values())
        scrapes = await self.scrape(children)
        self.fleet = FleetFigures.of(scrapes)
        # The pids of the very children scraped: a child exiting meanwhile must not turn
        # into a new incarnation whose whole count is added again.
        pids = {c.worker_id: c.pid for c in children}
        for worker, value in self.fleet.processed.items():
            # One counter per incarnation: a restarted child starts from zero again.
            self.processed.observe(f"{worker}#{pids[worker]}", value)
        backlog = self.queue.total if self.queue is not None else None
        self.history.add(Sample(self.clock(), self.processed.total, backlog, self.queue_seen_at))

    async def scrape(self, children: list[WorkerProcess] | None = None) -> list[ChildScrape]:
        if self.http is None:
            return []
        chosen = list(self.children.values()) if children is None else children
        endpoints = [ChildEndpoint(c.worker_id, c.metrics_url) for c in chosen]
        return await scrape_children(self.http, endpoints)

    async def children_ready(self) -> list[str]:
        """Why no child is ready, or [] when at least one is (or none is wanted)."""
        if self.http is None or self.target_count() == 0:
            return []
        problems = []
        for child in list(self.children.values()):
            url = child.metrics_url.replace("/metrics", "/readyz")
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                    if answer.status == 200:
                        return []
                    problems.append(f"{child.worker_id}: {await answer.text()}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"{child.worker_id}: {type(exc).__name__}")
        return problems or ["no worker process is running"]
