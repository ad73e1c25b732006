"""Several worker processes on one host (the role PM2 cluster mode plays), scaled by depth.

The supervisor consumes nothing itself, and decides. Its fleet (``runtime.fleet``) keeps the
children it is told to (each one a plain ``sluice run`` with its own WORKER_ID and a loopback
metrics port), restarts a child that dies with capped, jittered backoff and stops them all
gracefully on SIGTERM. The supervisor asks the ``AutoscalePolicy`` how many there should be
every ``SLUICE_QUEUE_ATTRIBUTES_INTERVAL`` seconds, serves its children's metrics together on
PORT, and hands the control endpoints a frozen snapshot of what it sees (``snapshot``).
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
from sluice.observe.aggregate import (
    ChildEndpoint,
    ChildScrape,
    FleetFigures,
    SupervisorFigures,
    render,
    scrape_children,
)
from sluice.observe.rates import RateHistory, ResettingCounters, Sample
from sluice.runtime.control import (
    WINDOWS,
    DepthReading,
    SupervisorControls,
    SupervisorStatus,
    supervisor_endpoints,
)
from sluice.runtime.fleet import ChildExit, ChildView, Fleet
from sluice.runtime.worker import install_signal_handlers, refuse_fifo, when_reachable
from sluice.scaling import (
    ScaleDirection,
    ScaleReason,
    ScalingDecision,
    ScalingInputs,
    ScalingMemory,
)
from sluice.sources.sqs import SqsQueue, sqs_client

SAMPLE_INTERVAL = 5.0  # children scraped for the throughput history at most this often


@dataclass(frozen=True)
class SupervisorSummary:
    started: int  # worker processes started, restarts included
    restarts: int
    scale_events: int


class Supervisor:
    """Decides how many workers the fleet runs, and reports what it sees."""

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
        self.clock = clock
        self.fleet = Fleet(settings, env, drain=drain, on_exit=self._exited, clock=clock)
        self.policy = settings.autoscale_policy
        self.desired = self.policy.min_workers
        self.pinned: int | None = None  # `sluice scale N`: overrides the policy until `auto`
        self.memory = ScalingMemory()
        self.last_decision: ScalingDecision | None = None
        self.scale_events: dict[str, int] = {}
        self.depth: DepthReading | None = None
        self.figures = FleetFigures({}, None, 0)
        self.processed = ResettingCounters()
        self.history = RateHistory(horizon=300.0)
        # A child finished a --drain run: the queue was empty. Crashed workers are still
        # restarted (SQS gives their messages back and someone must load them).
        self.drained = False
        self.http: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
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
            async with supervisor_endpoints(self.settings, self.controls()):
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
            await self.fleet.stop_all()

    @property
    def autoscaling(self) -> bool:
        return self.settings.autoscale is not None

    @property
    def mode(self) -> str:
        if self.autoscaling:
            return f"autoscale {self.policy.min_workers}:{self.policy.max_workers}"
        return f"fixed {self.desired}"

    def summary(self) -> SupervisorSummary:
        fleet = self.fleet.view()
        return SupervisorSummary(fleet.started, fleet.restarts, sum(self.scale_events.values()))

    async def _keep_children(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before reconciling, so a change made meanwhile (a child exiting while
            # another starts) wakes the next round instead of being lost.
            self._changed.clear()
            await self.fleet.ensure(self._wanted)
            if self.drain and self.drained and self.fleet.view().empty:
                self.log.info("supervisor_drained")
                return
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._changed.wait()),
            ]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    def _wanted(self) -> int | None:
        # The queue was seen empty: start nobody new, and stop nobody either; each worker
        # left exits once it has settled what it holds and sees the queue empty.
        return None if self.drained else self.target_count()

    def _exited(self, child: ChildExit) -> None:
        if child.finished:
            self.drained = True
        self._changed.set()

    def target_count(self) -> int:
        return self.pinned if self.pinned is not None else self.desired

    # ---- queue depth, throughput, scaling ------------------------------------------

    async def _depth_loop(self, source: SqsQueue, dlq: SqsQueue | None) -> None:
        while True:
            await asyncio.sleep(self.settings.queue_attributes_interval)
            await self._poll_depth(source, dlq)

    async def _poll_depth(self, source: SqsQueue, dlq: SqsQueue | None) -> None:
        try:
            queue = await source.depth()
            dead_letters = await dlq.depth() if dlq is not None else None
            self.depth = DepthReading(queue, dead_letters, self.clock())
        except SluiceError as exc:
            self.log.warning("queue_depth_failed", error=str(exc))
            self.depth = None
        if self.autoscaling:
            self.apply(await self._decide())

    async def _decide(self) -> ScalingDecision:
        current = self.fleet.view().active
        if self.depth is None:
            return self.policy.no_data(current)
        await self.refresh_fleet()
        inputs = ScalingInputs(self.depth.queue.visible, self.figures.oldest_age, current)
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
            self.desired = self.fleet.view().active
            self.memory = replace(self.memory, last_change=self.clock())
        self.log.warning("scale_pinned" if count is not None else "scale_unpinned", workers=count)
        self._changed.set()

    async def _sample_loop(self) -> None:
        interval = min(SAMPLE_INTERVAL, self.settings.queue_attributes_interval)
        while True:
            await self.refresh_fleet()
            await asyncio.sleep(interval)

    async def refresh_fleet(self) -> None:
        children = self.fleet.view().children
        scrapes = await self.scrape(children)
        self.figures = FleetFigures.of(scrapes)
        # The pids of the very children scraped: a child exiting meanwhile must not turn
        # into a new incarnation whose whole count is added again.
        pids = {c.worker_id: c.pid for c in children}
        for worker, value in self.figures.processed.items():
            # One counter per incarnation: a restarted child starts from zero again.
            self.processed.observe(f"{worker}#{pids[worker]}", value)
        depth = self.depth
        backlog = depth.queue.total if depth is not None else None
        self.history.add(
            Sample(self.clock(), self.processed.total, backlog, None if depth is None else depth.at)
        )

    async def scrape(self, children: tuple[ChildView, ...] | None = None) -> list[ChildScrape]:
        if self.http is None:
            return []
        chosen = self.fleet.view().children if children is None else children
        endpoints = [ChildEndpoint(c.worker_id, c.metrics_url) for c in chosen]
        return await scrape_children(self.http, endpoints)

    # ---- what the endpoints see ------------------------------------------------------

    def controls(self) -> SupervisorControls:
        return SupervisorControls(self.snapshot, self.scale_to, self.readiness, self.metrics)

    def snapshot(self) -> SupervisorStatus:
        """The figures of this moment, frozen: the endpoints read this, not the supervisor."""
        return SupervisorStatus(
            at=self.clock(),
            pid=os.getpid(),
            mode=self.mode,
            pinned=self.pinned,
            desired=self.target_count(),
            fleet=self.fleet.view(),
            depth=self.depth,
            figures=self.figures,
            processed=self.processed.total,
            rates={name: self.history.rates(seconds) for name, seconds in WINDOWS.items()},
            last_decision=self.last_decision,
        )

    async def metrics(self) -> bytes:
        """Every child's series, merged, then the supervisor's own."""
        scrapes = await self.scrape()
        fleet = self.fleet.view()
        own = SupervisorFigures(
            desired=self.target_count(),
            running=len(fleet.children),
            restarts=fleet.restarts,
            scale_events=dict(self.scale_events),
        )
        return render(scrapes, own)

    async def readiness(self) -> list[str]:
        problems = await self.children_ready()
        if self.depth is None:
            problems.append("SQS: GetQueueAttributes has not answered lately")
        return problems

    async def children_ready(self) -> list[str]:
        """Why no child is ready, or [] when at least one is (or none is wanted)."""
        if self.http is None or self.target_count() == 0:
            return []
        problems = []
        for child in self.fleet.view().children:
            url = child.metrics_url.replace("/metrics", "/readyz")
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                    if answer.status == 200:
                        return []
                    problems.append(f"{child.worker_id}: {await answer.text()}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"{child.worker_id}: {type(exc).__name__}")
        return problems or ["no worker process is running"]
