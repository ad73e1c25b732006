"""The adaptive concurrency policy: how many receives and deletes one worker keeps in flight.

A round trip to SQS costs microseconds against a local emulator and 5-40 ms against real SQS,
so no fixed count of long polls is right for both: each poll brings at most 10 messages per
round trip, and a worker needs about ``rate x round trip / 10`` of them in flight. The policy
finds that from what the pipeline sees in each window (``WindowFigures``), like the autoscaling
policy in ``scaling.py``: a pure object that reads no clock and holds no state of its own; the
caller passes the time and the last ``ConcurrencyState``, and gets back the next one.

Receives, by hill climbing on what the receivers bring per second, ``count / round trip``
(the round trip of the receives that came back full, averaged over the window: hundreds of
calls, so far steadier than the count of messages a 2 s window happens to see):

- the queue is the limit (most receives came back short of ``max_messages`` or empty): more
  polls would only make more requests, so the count steps down towards ``low``;
- the worker behind the receivers is the limit (they spent a quarter of the window waiting for
  room in the held budget, a full batch, or an open circuit): more polls cannot help; hold;
- otherwise the receivers are the limit: grow by half. The next window keeps the growth if
  ``count / round trip`` rose by a fifth (``gain``) of the step (a step from 8 to 12 must
  raise it by 10%). Behind network latency the round trip stays put as the count grows, and
  the step is kept; when the emulator, the CPU or the network is the limit, the round trip
  grows with the count (the calls queue), and the count steps back and stays for
  ``hold_after_no_gain`` seconds before probing again.

Deletes, by Little's law: groups of 10 asked for per second x their mean round trip is how
many are in flight on average; half as many again, plus one, absorbs a finished batch's burst
(a 5,000-row batch is 500 groups at once) within about a window. No more than that: deletes
in flight queue with the receives at SQS's door (and, on one machine, in the emulator), so a
surplus of deletes lengthens every receive. Deletes that fell behind over a window (more groups
waiting than slots, and fewer than half of those asked for answered) grow it at once; an
excess shrinks by a quarter a window.

A bound of ``low == high`` fixes the count (``SLUICE_RECEIVE_CONCURRENCY`` and
``SLUICE_DELETE_CONCURRENCY`` when set).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ConcurrencyBounds:
    """Where a count starts and the range it may move in."""

    low: int
    high: int
    start: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.start <= self.high:
            raise ValueError("concurrency bounds must satisfy 1 <= low <= start <= high")

    @classmethod
    def fixed(cls, count: int) -> ConcurrencyBounds:
        return cls(count, count, count)

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def clamp(self, count: int) -> int:
        return max(self.low, min(self.high, count))


class ReceiveReason(enum.Enum):
    FIXED = "fixed"
    GROWING = "growing"  # receivers were the limit: one step up
    KEPT = "kept"  # the last step up raised the rate: kept, and on to the next
    NO_GAIN = "no_gain"  # the last step up did not raise the rate: stepped back
    HOLDING = "holding"  # after a step back, waiting before the next probe
    DOWNSTREAM_LIMITED = "downstream_limited"  # receivers waited for room: more cannot help
    QUEUE_LIMITED = "queue_limited"  # receives came back short: fewer polls suffice
    AT_LIMIT = "at_limit"
    NO_DATA = "no_data"  # no receive answered in the window


@dataclass(frozen=True)
class WindowFigures:
    """What the pipeline saw in one window of ``seconds``."""

    seconds: float
    received: int = 0  # messages
    receives: int = 0  # receive calls that answered
    full_receives: int = 0  # answered with max_messages
    full_receive_seconds: float = 0.0  # their round trips, summed
    room_wait: float = 0.0  # receiver-seconds spent waiting for room to poll
    delete_groups: int = 0  # groups of up to 10 asked to be deleted
    delete_calls: int = 0  # delete calls that answered
    delete_seconds: float = 0.0  # their round trips, summed
    delete_backlog: int = 0  # groups waiting for a slot at the end of the window

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def capacity(self, receivers: int) -> float:
        """Receives ``receivers`` polls complete per second at this window's round trip."""
        if not self.full_receives or self.full_receive_seconds <= 0:
            return 0.0
        return receivers / (self.full_receive_seconds / self.full_receives)


@dataclass(frozen=True)
class ConcurrencyState:
    receive: int
    delete: int
    reason: ReceiveReason = ReceiveReason.NO_DATA
    before_probe: int | None = None  # the receive count before a step up not yet judged
    capacity_before_probe: float = 0.0
    hold_until: float | None = None


@dataclass(frozen=True)
class AdaptiveConcurrency:
    receive: ConcurrencyBounds
    delete: ConcurrencyBounds
    window: float = 2.0  # seconds between decisions
    gain: float = 0.2  # share of a step's proportional gain it must bring to be kept
    step: float = 1.5  # a step up multiplies the count by this
    hold_after_no_gain: float = 20.0
    full_share: float = 0.5  # under this share of full receives, the queue is the limit
    room_share: float = 0.25  # over this share of the window waiting for room: downstream

    def start(self) -> ConcurrencyState:
        reason = ReceiveReason.FIXED if self.receive.is_fixed else ReceiveReason.NO_DATA
        return ConcurrencyState(self.receive.start, self.delete.start, reason)

    def decide(
        self, figures: WindowFigures, state: ConcurrencyState, now: float
    ) -> ConcurrencyState:
        state = replace(state, delete=self.deletes(figures, state.delete))
        if self.receive.is_fixed:
            return replace(state, receive=self.receive.low, reason=ReceiveReason.FIXED)
        return self._receives(figures, state, now)

    def deletes(self, figures: WindowFigures, current: int) -> int:
        if self.delete.is_fixed:
            return self.delete.low
        if figures.delete_calls == 0 or figures.seconds <= 0:
            # Nothing answered: grow only if groups are waiting (a burst, or slow deletes).
            return self.delete.clamp(current * 2 if figures.delete_backlog else current)
        round_trip = figures.delete_seconds / figures.delete_calls
        demand = figures.delete_groups / figures.seconds
        needed = math.ceil(1.5 * demand * round_trip) + 1
        behind = figures.delete_calls < figures.delete_groups / 2
        if figures.delete_backlog > current and behind:
            needed = max(needed, math.ceil(current * self.step))
        if needed >= current:
            return self.delete.clamp(needed)
        return self.delete.clamp(max(needed, current - max(1, current // 4)))

    def _receives(
        self, figures: WindowFigures, state: ConcurrencyState, now: float
    ) -> ConcurrencyState:
        current = state.receive
        if figures.receives == 0:
            return replace(state, reason=ReceiveReason.NO_DATA)
        if state.before_probe is not None:  # judge the last step up first
            return self._judge_probe(figures, state, now)
        if figures.full_receives < self.full_share * figures.receives:
            step_down = self.receive.clamp(current - max(1, current // 4))
            return replace(state, receive=step_down, reason=ReceiveReason.QUEUE_LIMITED)
        if figures.room_wait > self.room_share * figures.seconds * current:
            return replace(state, reason=ReceiveReason.DOWNSTREAM_LIMITED)
        if state.hold_until is not None and now < state.hold_until:
            return replace(state, reason=ReceiveReason.HOLDING)
        return self._grow(state, figures.capacity(current), ReceiveReason.GROWING)

    def _judge_probe(
        self, figures: WindowFigures, state: ConcurrencyState, now: float
    ) -> ConcurrencyState:
        """Keep the last step up (and take the next) if the rate rose enough; else undo it."""
        before = state.before_probe
        if before is None:
            return self._grow(state, figures.capacity(state.receive), ReceiveReason.KEPT)
        wanted = 1 + self.gain * (state.receive / before - 1)
        capacity = figures.capacity(state.receive)
        if capacity >= state.capacity_before_probe * wanted:
            return self._grow(state, capacity, ReceiveReason.KEPT)
        return replace(
            state,
            receive=before,
            reason=ReceiveReason.NO_GAIN,
            before_probe=None,
            hold_until=now + self.hold_after_no_gain,
        )

    def _grow(
        self, state: ConcurrencyState, capacity: float, reason: ReceiveReason
    ) -> ConcurrencyState:
        grown = self.receive.clamp(math.ceil(state.receive * self.step))
        if grown == state.receive:
            return replace(state, reason=ReceiveReason.AT_LIMIT, before_probe=None)
        return replace(
            state,
            receive=grown,
            reason=reason,
            before_probe=state.receive,
            capacity_before_probe=capacity,
            hold_until=None,
        )


@dataclass
class ReceiveTally:
    """The receive side's figures for the window under way, counted by the pipeline."""

    received: int = 0
    receives: int = 0
    full_receives: int = 0
    full_receive_seconds: float = 0.0
    room_wait: float = 0.0

    def answered(self, messages: int, max_messages: int, seconds: float) -> None:
        """A receive answered with ``messages`` after ``seconds``."""
        self.received += messages
        self.receives += 1
        if messages >= max_messages:
            self.full_receives += 1
            self.full_receive_seconds += seconds

    def take(
        self, seconds: float, asked: int, answered: int, round_trips: float, backlog: int
    ) -> WindowFigures:
        """The window's figures, with the delete side's; the tally starts over."""
        figures = WindowFigures(
            seconds=seconds,
            received=self.received,
            receives=self.receives,
            full_receives=self.full_receives,
            full_receive_seconds=self.full_receive_seconds,
            room_wait=self.room_wait,
            delete_groups=asked,
            delete_calls=answered,
            delete_seconds=round_trips,
            delete_backlog=backlog,
        )
        self.received = self.receives = self.full_receives = 0
        self.full_receive_seconds = self.room_wait = 0.0
        return figures


@dataclass(frozen=True)
class ConcurrencyView:
    """What the metrics show: the policy's counts, and what is in flight against them."""

    receive: int
    delete: int
    polls_in_flight: int
    deletes_in_flight: int
    settling: int  # messages committed and waiting for their delete
    reason: ReceiveReason
