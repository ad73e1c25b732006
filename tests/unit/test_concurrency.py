"""The adaptive concurrency policy, decided on figures and a fake clock: no I/O, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from sluice.concurrency import (
    AdaptiveConcurrency,
    ConcurrencyBounds,
    ConcurrencyState,
    ReceiveReason,
    ReceiveTally,
    WindowFigures,
)
from sluice.model import SettleResult
from sluice.settle import SettleSlots

RECEIVE = ConcurrencyBounds(low=2, high=64, start=8)
DELETE = ConcurrencyBounds(low=2, high=64, start=8)
WINDOW = 2.0


def policy(**overrides: float) -> AdaptiveConcurrency:
    return AdaptiveConcurrency(RECEIVE, DELETE, **overrides)  # type: ignore[arg-type]


def full(rate: float, receivers: int, **extra: float) -> WindowFigures:
    """A window in which ``receivers`` polls came back full, at ``rate`` messages a second:
    by Little's law each took ``receivers x 10 / rate`` seconds."""
    received = int(rate * WINDOW)
    return WindowFigures(
        seconds=WINDOW,
        received=received,
        receives=received // 10,
        full_receives=received // 10,
        full_receive_seconds=received // 10 * receivers * 10 / rate,
        **extra,  # type: ignore[arg-type]
    )


def simulate(
    p: AdaptiveConcurrency,
    rate_of: object,
    windows: int,
    noise: Sequence[float] = (1.0,),
) -> list[ConcurrencyState]:
    """Run the policy against a worker whose rate is ``rate_of(receivers)``, window by window;
    ``noise`` scales the round trips, window after window (a shared machine's jitter)."""
    state = p.start()
    seen = []
    for i in range(windows):
        rate = rate_of(state.receive)  # type: ignore[operator]
        figures = full(rate, state.receive)
        jitter = noise[i % len(noise)]
        figures = replace(figures, full_receive_seconds=figures.full_receive_seconds * jitter)
        state = p.decide(figures, state, now=i * WINDOW)
        seen.append(state)
    return seen


def latency_bound(round_trip: float, ceiling: float) -> object:
    """Each receiver brings 10 messages per round trip, up to what the rest can take (past
    that, the calls queue and the round trip grows)."""
    return lambda receivers: min(ceiling, receivers * 10 / round_trip)


def test_grows_while_the_rate_grows_then_settles_near_what_the_latency_needs() -> None:
    # 40 ms a round trip, 5,000 msg/s at most: 20 receivers are enough.
    states = simulate(policy(), latency_bound(0.040, 5_000), windows=30)
    counts = [s.receive for s in states]
    assert counts[0] > RECEIVE.start  # first window: a step up
    assert max(counts) <= 64
    settled = counts[-5:]
    assert all(20 <= c <= 45 for c in settled), counts
    assert ReceiveReason.NO_GAIN in {s.reason for s in states}


def test_on_localhost_it_does_not_grow_past_what_helps() -> None:
    # Microsecond round trips: 8 receivers already bring all the rest can take.
    states = simulate(policy(), latency_bound(0.001, 5_000), windows=30)
    assert states[0].receive == 12  # one probe...
    assert states[1].receive == RECEIVE.start  # ...that did not raise the rate: undone
    assert states[1].reason is ReceiveReason.NO_GAIN
    assert states[1].hold_until == pytest.approx(1 * WINDOW + 20.0)
    # Held for 20 s (10 windows), then probes again, and steps back again.
    assert {s.receive for s in states[2:11]} == {RECEIVE.start}
    assert max(s.receive for s in states) == 12


def test_a_probe_is_kept_only_for_a_real_gain() -> None:
    p = policy()
    # 8 polls of 80 ms: 100 receives a second. 8 -> 12 would bring +50% if receivers were all
    # that counted: +10% (110 a second, a round trip of 109 ms or less) is the least kept.
    probing = ConcurrencyState(receive=12, delete=8, before_probe=8, capacity_before_probe=100)
    small = p.decide(full(1090, 12), probing, now=0)
    assert (small.receive, small.reason) == (8, ReceiveReason.NO_GAIN)
    real = p.decide(full(1110, 12), probing, now=0)
    assert (real.receive, real.reason) == (18, ReceiveReason.KEPT)


def test_a_noisy_machine_still_finds_the_latency() -> None:
    # Round trips jittering by +-15% window to window on a shared machine: behind 20 ms the
    # count still climbs to what 4,500 msg/s needs (9 polls) and more.
    jitter = (1.0, 1.15, 0.9, 1.1, 0.85, 1.05)
    states = simulate(policy(), latency_bound(0.020, 4_500), windows=30, noise=jitter)
    assert max(s.receive for s in states) >= 12
    assert all(s.receive >= 9 for s in states[-10:]), [s.receive for s in states]


def test_short_receives_mean_the_queue_is_the_limit_so_it_shrinks() -> None:
    p = policy()
    state = ConcurrencyState(receive=32, delete=8)
    trickle = WindowFigures(seconds=WINDOW, received=300, receives=100, full_receives=10)
    counts = []
    for i in range(15):
        state = p.decide(trickle, state, now=i * WINDOW)
        counts.append(state.receive)
    assert state.reason is ReceiveReason.QUEUE_LIMITED
    assert counts == sorted(counts, reverse=True) and counts[-1] == RECEIVE.low


def test_receivers_waiting_for_room_do_not_grow() -> None:
    # The warehouse is the limit: receivers spent half the window waiting for the budget.
    state = ConcurrencyState(receive=8, delete=8)
    waited = full(3000, 8, room_wait=0.5 * WINDOW * 8)
    after = policy().decide(waited, state, now=0)
    assert (after.receive, after.reason) == (8, ReceiveReason.DOWNSTREAM_LIMITED)


def test_no_answer_in_a_window_changes_nothing() -> None:
    state = ConcurrencyState(receive=8, delete=8)
    after = policy().decide(WindowFigures(seconds=WINDOW), state, now=0)
    assert (after.receive, after.reason) == (8, ReceiveReason.NO_DATA)


def test_the_ceiling_is_a_ceiling() -> None:
    states = simulate(policy(), latency_bound(0.5, 10**9), windows=20)
    assert max(s.receive for s in states) == 64
    assert states[-1].reason is ReceiveReason.AT_LIMIT


def test_fixed_counts_never_move() -> None:
    p = AdaptiveConcurrency(ConcurrencyBounds.fixed(4), ConcurrencyBounds.fixed(3))
    states = simulate(p, latency_bound(0.040, 5_000), windows=5)
    assert {(s.receive, s.delete, s.reason) for s in states} == {(4, 3, ReceiveReason.FIXED)}


def test_deletes_follow_demand_times_round_trip() -> None:
    p = policy()
    # 400 groups a second at 40 ms: 16 in flight on average, half as many again plus one.
    busy = WindowFigures(
        seconds=WINDOW, delete_groups=800, delete_calls=800, delete_seconds=800 * 0.040
    )
    assert p.deletes(busy, 8) == 25
    # Localhost: 1 ms round trips need few; the excess goes a quarter a window.
    quick = WindowFigures(
        seconds=WINDOW, delete_groups=800, delete_calls=800, delete_seconds=800 * 0.001
    )
    assert p.deletes(quick, 33) == 25
    assert p.deletes(quick, 3) == 2
    # Falling behind: more groups waiting than slots, most of the window's unanswered.
    behind = WindowFigures(
        seconds=WINDOW, delete_groups=100, delete_calls=10, delete_seconds=0.1, delete_backlog=50
    )
    assert p.deletes(behind, 8) == 12
    # A batch's burst just asked for at the end of a window that kept up is not falling behind.
    burst = replace(behind, delete_groups=1000, delete_calls=600, delete_seconds=600 * 0.001)
    assert p.deletes(burst, 8) == 6
    stuck = WindowFigures(seconds=WINDOW, delete_backlog=500)
    assert p.deletes(stuck, 8) == 16
    assert p.deletes(stuck, 60) == 64


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="bounds"):
        ConcurrencyBounds(low=4, high=2, start=3)
    with pytest.raises(ValueError, match="bounds"):
        ConcurrencyBounds(low=0, high=2, start=1)


def test_the_tally_counts_a_window_then_starts_over() -> None:
    tally = ReceiveTally()
    tally.answered(10, 10, 0.04)
    tally.answered(3, 10, 0.5)
    tally.answered(0, 10, 1.0)
    tally.room_wait += 0.25
    figures = tally.take(2.0, asked=5, answered=4, round_trips=0.2, backlog=1)
    assert (figures.received, figures.receives, figures.full_receives) == (13, 3, 1)
    assert figures.rate == 6.5 and figures.room_wait == 0.25
    assert figures.capacity(4) == pytest.approx(100)  # 4 polls of 40 ms
    assert (figures.delete_groups, figures.delete_calls, figures.delete_backlog) == (5, 4, 1)
    assert tally.take(2.0, 0, 0, 0.0, 0).received == 0


def test_settle_slots_bound_calls_in_flight_and_follow_a_new_limit() -> None:
    async def go() -> tuple[int, int]:
        slots = SettleSlots(2)
        in_flight = peak = 0
        release = asyncio.Event()

        async def call() -> SettleResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await release.wait()
            in_flight -= 1
            return SettleResult((), ())

        tasks = [asyncio.create_task(slots.run(call)) for _ in range(10)]
        await asyncio.sleep(0)
        first_peak = peak
        slots.set_limit(5)
        await asyncio.sleep(0)
        assert slots.waiting == 5
        # A waiter cancelled does not take a slot with it.
        tasks[-1].cancel()
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slots.busy == 0 and slots.waiting == 0
        asked, answered, _ = slots.take_figures()
        assert (asked, answered) == (10, 9)
        return first_peak, peak

    assert asyncio.run(go()) == (2, 5)
