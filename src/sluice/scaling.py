"""The autoscaling policy: how many workers a queue needs, and when to change the count.

One pure object serves the supervisor (``sluice run --autoscale``), the planner and the
simulator, so what the simulation predicts is what the supervisor does. It reads no clock
and holds no state of its own: the caller passes the time and the last ``ScalingMemory``,
and gets back a ``ScalingDecision`` and the memory to pass next time.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace


class ScaleDirection(enum.Enum):
    OUT = "out"
    IN = "in"
    HOLD = "hold"


class ScaleReason(enum.Enum):
    BACKLOG = "backlog"  # ceil(backlog / target) differs from the current count
    BELOW_MIN = "below_min"  # fewer run than the minimum (start-up): restored at once
    OLDEST_AGE = "oldest_age"  # the oldest message is older than the SLO: one more worker
    AT_TARGET = "at_target"  # the count already matches the backlog
    AT_LIMIT = "at_limit"  # the backlog asks for more (or fewer) than min..max allows
    OUT_COOLDOWN = "scale_out_cooldown"
    IN_COOLDOWN = "scale_in_cooldown"
    NO_DATA = "no_data"  # the queue depth is unknown: keep what runs
    MANUAL = "manual"  # `sluice scale N` pinned the count
    AGE_BLOCKS_SCALE_IN = "age_blocks_scale_in"  # oldest message over half the SLO: keep all


@dataclass(frozen=True)
class ScalingInputs:
    """What the policy decides on: queue figures and the count running now."""

    backlog: int  # ApproximateNumberOfMessages (visible)
    oldest_age: float | None  # seconds; None when no worker holds a message
    current: int


@dataclass(frozen=True)
class ScalingMemory:
    """When the count last went up and last changed at all (monotonic seconds)."""

    last_scale_out: float | None = None
    last_change: float | None = None


@dataclass(frozen=True)
class ScalingDecision:
    direction: ScaleDirection
    desired: int
    reason: ScaleReason
    inputs: ScalingInputs
    wanted: int  # what the backlog and age alone ask for, before limits and cooldowns

    def describe(self) -> dict[str, object]:
        """Fields for the decision's log line: inputs, outcome and reason."""
        return {
            "direction": self.direction.value,
            "reason": self.reason.value,
            "current": self.inputs.current,
            "desired": self.desired,
            "wanted": self.wanted,
            "backlog": self.inputs.backlog,
            "oldest_age": None if self.inputs.oldest_age is None else round(self.inputs.oldest_age),
        }


@dataclass(frozen=True)
class AutoscalePolicy:
    """desired = ceil(backlog / target_backlog_per_worker), clamped to [min, max].

    Age-aware: when the oldest message is older than ``scale_out_age`` the policy asks for
    one worker more than runs now even if the backlog is under target (a slow warehouse or
    heavy messages make the backlog figure lie), and it does not scale in until that age is
    back under half the SLO. Separate cooldowns: another scale-out waits
    ``scale_out_cooldown`` after the last one; a scale-in waits ``scale_in_cooldown`` after
    any change, and halves the distance to the target at most, so the count does not flap.
    """

    min_workers: int = 1
    max_workers: int = 4
    target_backlog_per_worker: int = 50_000
    scale_out_cooldown: float = 60.0
    scale_in_cooldown: float = 300.0
    scale_out_age: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError("autoscale range must satisfy 0 <= min <= max")
        if self.target_backlog_per_worker < 1:
            raise ValueError("target backlog per worker must be at least 1")

    def clamp(self, count: int) -> int:
        return max(self.min_workers, min(self.max_workers, count))

    def wanted(self, backlog: int, oldest_age: float | None, current: int) -> int:
        """What the queue asks for, before limits and cooldowns."""
        by_backlog = math.ceil(max(backlog, 0) / self.target_backlog_per_worker)
        if self.is_late(oldest_age):
            return max(by_backlog, current + 1)
        return by_backlog

    def is_late(self, oldest_age: float | None) -> bool:
        return oldest_age is not None and oldest_age > self.scale_out_age

    def is_settling(self, oldest_age: float | None) -> bool:
        """Hysteresis: no scale-in until the oldest message is back under half the SLO."""
        return oldest_age is not None and oldest_age > self.scale_out_age / 2

    def decide(
        self, inputs: ScalingInputs, memory: ScalingMemory, now: float
    ) -> tuple[ScalingDecision, ScalingMemory]:
        wanted = self.wanted(inputs.backlog, inputs.oldest_age, inputs.current)
        target = self.clamp(wanted)
        current = inputs.current
        if target > current:
            return self._out(inputs, memory, now, wanted, target)
        if target < current:
            return self._in(inputs, memory, now, wanted, target)
        reason = ScaleReason.AT_TARGET if wanted == target else ScaleReason.AT_LIMIT
        return self._hold(inputs, wanted, reason), memory

    def _out(
        self, inputs: ScalingInputs, memory: ScalingMemory, now: float, wanted: int, target: int
    ) -> tuple[ScalingDecision, ScalingMemory]:
        # A count under min (a fresh start, a crashed child) is restored without waiting.
        below_min = inputs.current < self.min_workers
        if not below_min and _within(memory.last_scale_out, now, self.scale_out_cooldown):
            return self._hold(inputs, wanted, ScaleReason.OUT_COOLDOWN), memory
        by_age = (
            self.is_late(inputs.oldest_age)
            and math.ceil(max(inputs.backlog, 0) / self.target_backlog_per_worker) <= inputs.current
        )
        if by_age:
            reason = ScaleReason.OLDEST_AGE
        elif below_min and target == self.min_workers:
            reason = ScaleReason.BELOW_MIN
        else:
            reason = ScaleReason.BACKLOG
        decision = ScalingDecision(ScaleDirection.OUT, target, reason, inputs, wanted)
        return decision, ScalingMemory(last_scale_out=now, last_change=now)

    def _in(
        self, inputs: ScalingInputs, memory: ScalingMemory, now: float, wanted: int, target: int
    ) -> tuple[ScalingDecision, ScalingMemory]:
        current = inputs.current
        above_max = current > self.max_workers
        if not above_max:
            if self.is_settling(inputs.oldest_age):
                return self._hold(inputs, wanted, ScaleReason.AGE_BLOCKS_SCALE_IN), memory
            if _within(memory.last_change, now, self.scale_in_cooldown):
                return self._hold(inputs, wanted, ScaleReason.IN_COOLDOWN), memory
        # Halve the distance to the target, never more: shedding all surplus at once sends a
        # fleet that only just keeps up below the arrival rate, and the age rule back out.
        step_down = current - math.ceil((current - target) / 2)
        desired = min(self.max_workers, step_down)
        decision = ScalingDecision(ScaleDirection.IN, desired, ScaleReason.BACKLOG, inputs, wanted)
        return decision, replace(memory, last_change=now)

    @staticmethod
    def _hold(inputs: ScalingInputs, wanted: int, reason: ScaleReason) -> ScalingDecision:
        return ScalingDecision(ScaleDirection.HOLD, inputs.current, reason, inputs, wanted)

    @staticmethod
    def no_data(current: int) -> ScalingDecision:
        inputs = ScalingInputs(backlog=0, oldest_age=None, current=current)
        return ScalingDecision(ScaleDirection.HOLD, current, ScaleReason.NO_DATA, inputs, current)


def _within(since: float | None, now: float, window: float) -> bool:
    return since is not None and now - since < window


@dataclass(frozen=True)
class ScaleRange:
    """``MIN:MAX`` from ``--autoscale``."""

    low: int
    high: int

    @classmethod
    def parse(cls, raw: str) -> ScaleRange:
        low_text, sep, high_text = raw.strip().partition(":")
        try:
            low, high = int(low_text), int(high_text)
        except ValueError:
            raise ValueError("must be MIN:MAX, two whole numbers such as 1:8") from None
        if not sep or not 0 <= low <= high or high < 1 or high > MAX_PROCESSES:
            raise ValueError(f"must be MIN:MAX with 0 <= MIN <= MAX, 1 <= MAX <= {MAX_PROCESSES}")
        return cls(low, high)

    def __str__(self) -> str:
        return f"{self.low}:{self.high}"


MAX_PROCESSES = 256
