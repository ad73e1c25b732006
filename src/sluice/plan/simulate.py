"""Backlog over time under an autoscaled fleet: a fixed-step simulation, pure (no I/O).

Each step of ``scenario.step`` seconds, in this order:

1. the messages that arrived during the step join the queue as one cohort, stamped with the
   step's start, so ages are upper bounds, at most one step too old;
2. every worker past its start-up delay processes ``rate * time ready in the step``
   messages, oldest cohort first. Counts are whole messages: the fractional capacity left
   over carries to the next step, and capacity the empty queue could not use is lost, so
   ``arrived + initial backlog == processed + backlog`` holds exactly at every step;
3. when a decision is due (every ``decision_interval``), the fleet's
   ``sluice.scaling.AutoscalePolicy`` is asked exactly as the supervisor asks it:
   ``decide(ScalingInputs(visible backlog, oldest held age, workers incl. starting),
   memory, now)`` with the returned memory carried, so its cooldowns apply. Scale-out starts
   workers (each draws its rate); scale-in stops the highest slots, as the supervisor does.

The oldest age the policy sees is the supervisor's: the age of the oldest message a worker
holds, so ``None`` while no worker is past start-up or the queue is empty. Messages held by
workers count as visible (at most one batch per worker: small against any backlog worth
simulating). The queue is modelled FIFO; SQS standard queues are only roughly so.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice.plan.scenario import DAY, Fleet, Scenario
from sluice.scaling import ScaleDirection, ScalingDecision, ScalingInputs, ScalingMemory

_EPSILON = 1e-9  # float slack when comparing times built from sums of steps


@dataclass(frozen=True, slots=True)
class Step:
    """The state at the end of one step (and after the decision taken at that moment)."""

    time: float
    arrived: int  # cumulative since time 0, initial backlog excluded
    processed: int  # cumulative
    backlog: int  # waiting, held included
    running: int  # past start-up
    starting: int  # started, still inside the start-up delay
    oldest_age: float | None  # of the oldest message waiting; None when the queue is empty
    decision: ScalingDecision | None  # None when no decision was due at this step

    @property
    def workers(self) -> int:
        return self.running + self.starting


@dataclass(frozen=True)
class ScaleEvent:
    time: float
    direction: ScaleDirection
    before: int
    after: int
    reason: str


class DrainOutcome(enum.Enum):
    DRAINED = "drained"  # the queue was empty at some step
    NEVER = "never"  # not within the simulated horizon


@dataclass(frozen=True)
class Summary:
    label: str
    drain: DrainOutcome
    drained_at: float | None  # first step at which the queue was empty
    initial_cleared_at: float | None  # the last message of the initial backlog processed
    peak_backlog: int
    peak_backlog_at: float
    max_oldest_age: float
    worker_hours: float
    scale_outs: int
    scale_ins: int
    final_workers: int
    tail_workers: tuple[int, int]  # min and max over the last day (or the last quarter)
    final_backlog: int
    final_oldest_age: float | None
    arrived: int
    processed: int

    @property
    def scale_events(self) -> int:
        return self.scale_outs + self.scale_ins

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "drain": self.drain.value,
            "drained_at_s": self.drained_at,
            "initial_cleared_at_s": self.initial_cleared_at,
            "peak_backlog": self.peak_backlog,
            "peak_backlog_at_s": self.peak_backlog_at,
            "max_oldest_age_s": self.max_oldest_age,
            "worker_hours": round(self.worker_hours, 3),
            "scale_events": self.scale_events,
            "scale_outs": self.scale_outs,
            "scale_ins": self.scale_ins,
            "final_workers": self.final_workers,
            "tail_workers": list(self.tail_workers),
            "final_backlog": self.final_backlog,
            "final_oldest_age_s": self.final_oldest_age,
            "arrived": self.arrived,
            "processed": self.processed,
        }


@dataclass(frozen=True)
class Run:
    fleet: Fleet
    initial_backlog: int
    steps: tuple[Step, ...]
    events: tuple[ScaleEvent, ...]
    summary: Summary


@dataclass(slots=True)
class _Worker:
    rate: float  # messages/s
    ready_at: float  # start time + start-up delay


@dataclass(slots=True)
class _Cohort:
    stamp: float  # when its messages arrived (the start of their step)
    count: int


@dataclass
class _Queue:
    """FIFO cohorts: the oldest message's age is a real figure, not an estimate."""

    cohorts: deque[_Cohort] = field(default_factory=deque)
    size: int = 0

    def push(self, stamp: float, count: int) -> None:
        if count > 0:
            self.cohorts.append(_Cohort(stamp, count))
            self.size += count

    def take(self, count: int) -> None:
        self.size -= count
        while count > 0:
            head = self.cohorts[0]
            used = min(count, head.count)
            head.count -= used
            count -= used
            if head.count == 0:
                self.cohorts.popleft()

    def oldest_stamp(self) -> float | None:
        return self.cohorts[0].stamp if self.cohorts else None


class _Engine:
    """The mutable state of one run; ``simulate`` is its only user."""

    def __init__(self, scenario: Scenario, fleet: Fleet) -> None:
        self.scenario = scenario
        self.fleet = fleet
        self.rng = random.Random(scenario.seed)  # reproducible draws, not secrets
        self.queue = _Queue()
        self.queue.push(-scenario.initial_backlog_age, scenario.initial_backlog)
        self.arrived = 0
        self.processed = 0
        self.carry = 0.0  # fractional capacity not yet turned into a whole message
        self.worker_seconds = 0.0
        self.workers: list[_Worker] = []
        # Cached over the workers, refreshed on every change: most steps need only these.
        self.total_rate = 0.0
        self.first_ready = math.inf
        self.last_ready = -math.inf
        self.memory = ScalingMemory()
        self.next_decision = 0.0
        self.events: list[ScaleEvent] = []
        self._start(fleet.initial_workers, -fleet.startup_delay)

    def run(self) -> tuple[Step, ...]:
        steps = [self._record(0.0, self._decide_if_due(0.0))]
        count = math.ceil(self.scenario.duration / self.scenario.step - _EPSILON)
        for k in range(1, count + 1):
            start, end = (k - 1) * self.scenario.step, k * self.scenario.step
            self._arrive(start, end)
            self._process(start, end)
            steps.append(self._record(end, self._decide_if_due(end)))
        return tuple(steps)

    def _arrive(self, start: float, end: float) -> None:
        total = self.scenario.arrivals.cumulative(end)
        if total > self.arrived:
            self.queue.push(start, total - self.arrived)
            self.arrived = total

    def _capacity(self, start: float, end: float) -> float:
        if start + _EPSILON >= self.last_ready:  # all past start-up: the common case
            return self.total_rate * (end - start)
        return sum(
            w.rate * (end - max(start, w.ready_at)) for w in self.workers if w.ready_at < end
        )

    def _running(self, now: float) -> int:
        if now + _EPSILON >= self.last_ready:
            return len(self.workers)
        return sum(1 for w in self.workers if w.ready_at <= now + _EPSILON)

    def _workers_changed(self) -> None:
        self.total_rate = sum(w.rate for w in self.workers)
        self.first_ready = min((w.ready_at for w in self.workers), default=math.inf)
        self.last_ready = max((w.ready_at for w in self.workers), default=-math.inf)

    def _process(self, start: float, end: float) -> None:
        self.worker_seconds += len(self.workers) * (end - start)
        budget = self.carry + self._capacity(start, end)
        # The slack stops float sums (0.3 msg/s for 10 s = 2.9999...) losing a message.
        whole = math.floor(budget + _EPSILON)
        done = min(whole, self.queue.size)
        # Leftover capacity carries only while there is work: idle time cannot be banked.
        self.carry = max(0.0, budget - whole) if done == whole else 0.0
        self.queue.take(done)
        self.processed += done

    def _held_age(self, now: float) -> float | None:
        """What the supervisor reads from its workers: None when none holds a message."""
        stamp = self.queue.oldest_stamp()
        if stamp is None or now + _EPSILON < self.first_ready:
            return None
        return now - stamp

    def _decide_if_due(self, now: float) -> ScalingDecision | None:
        if now + _EPSILON < self.next_decision:
            return None
        interval = self.fleet.decision_interval
        self.next_decision = (math.floor(now / interval + _EPSILON) + 1) * interval
        before = len(self.workers)
        inputs = ScalingInputs(
            backlog=self.queue.size, oldest_age=self._held_age(now), current=before
        )
        decision, self.memory = self.fleet.policy.decide(inputs, self.memory, now)
        if decision.direction is ScaleDirection.OUT:
            self._start(decision.desired - before, now)
        elif decision.direction is ScaleDirection.IN:
            del self.workers[decision.desired :]  # the highest slots, as the supervisor stops
            self._workers_changed()
        if decision.direction is not ScaleDirection.HOLD:
            self.events.append(
                ScaleEvent(now, decision.direction, before, decision.desired, decision.reason.value)
            )
        return decision

    def _start(self, count: int, now: float) -> None:
        ready_at = now + self.fleet.startup_delay
        self.workers.extend(
            _Worker(self.fleet.rates.draw(self.rng), ready_at) for _ in range(count)
        )
        self._workers_changed()

    def _record(self, now: float, decision: ScalingDecision | None) -> Step:
        running = self._running(now)
        stamp = self.queue.oldest_stamp()
        return Step(
            time=now,
            arrived=self.arrived,
            processed=self.processed,
            backlog=self.queue.size,
            running=running,
            starting=len(self.workers) - running,
            oldest_age=None if stamp is None else now - stamp,
            decision=decision,
        )


def simulate(scenario: Scenario, fleet: Fleet | None = None) -> Run:
    """One run of ``fleet`` (the scenario's first by default) against the scenario's arrivals."""
    chosen = scenario.fleet if fleet is None else fleet
    engine = _Engine(scenario, chosen)
    steps = engine.run()
    events = tuple(engine.events)
    summary = summarize(chosen.label, steps, events, scenario, engine.worker_seconds / 3_600)
    return Run(chosen, scenario.initial_backlog, steps, events, summary)


def simulate_all(scenario: Scenario) -> tuple[Run, ...]:
    """Every fleet of the scenario (one, or two with ``[compare]``) on the same arrivals."""
    return tuple(simulate(scenario, fleet) for fleet in scenario.fleets)


def summarize(
    label: str,
    steps: tuple[Step, ...],
    events: tuple[ScaleEvent, ...],
    scenario: Scenario,
    worker_hours: float,
) -> Summary:
    peak = max(steps, key=lambda s: s.backlog)
    final = steps[-1]
    tail_from = final.time - min(DAY, scenario.duration / 4)
    tail = [s.workers for s in steps if s.time >= tail_from - _EPSILON]
    drained_at = _first(steps, lambda s: s.backlog == 0)
    return Summary(
        label=label,
        drain=DrainOutcome.NEVER if drained_at is None else DrainOutcome.DRAINED,
        drained_at=drained_at,
        initial_cleared_at=_first(steps, lambda s: s.processed >= scenario.initial_backlog),
        peak_backlog=peak.backlog,
        peak_backlog_at=peak.time,
        max_oldest_age=max((s.oldest_age or 0.0) for s in steps),
        worker_hours=worker_hours,
        scale_outs=sum(1 for e in events if e.direction is ScaleDirection.OUT),
        scale_ins=sum(1 for e in events if e.direction is ScaleDirection.IN),
        final_workers=final.workers,
        tail_workers=(min(tail), max(tail)),
        final_backlog=final.backlog,
        final_oldest_age=final.oldest_age,
        arrived=final.arrived,
        processed=final.processed,
    )


def _first(steps: tuple[Step, ...], test: Callable[[Step], bool]) -> float | None:
    return next((s.time for s in steps if test(s)), None)
