"""`sluice simulate`'s arithmetic: hand-computed drains, conservation, cooldowns, the policy."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluice.scaling
from sluice.config import load_settings
from sluice.plan.scenario import (
    DAY,
    ArrivalProfile,
    Burst,
    Distribution,
    Fleet,
    Scenario,
    ScenarioError,
    WorkerRates,
    load_scenario,
    scenario_from_mapping,
)
from sluice.plan.simulate import DrainOutcome, Run, simulate, simulate_all
from sluice.scaling import (
    AutoscalePolicy,
    ScaleDirection,
    ScaleReason,
    ScalingDecision,
    ScalingInputs,
    ScalingMemory,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def fixed_fleet(workers: int, rate: float, *, startup: float = 0.0, ready: bool = True) -> Fleet:
    """``workers`` workers at exactly ``rate`` msg/s, never scaled (min = max)."""
    return Fleet(
        label=f"{workers} x {rate}",
        policy=AutoscalePolicy(min_workers=workers, max_workers=workers),
        rates=WorkerRates(Distribution.FIXED, rate),
        startup_delay=startup,
        decision_interval=60.0,
        initial_workers=workers if ready else 0,
    )


def scenario(
    fleet: Fleet,
    *,
    backlog: int = 0,
    per_second: float = 0.0,
    duration: float = 3_600.0,
    step: float = 1.0,
    **arrivals: Any,
) -> Scenario:
    return Scenario(
        name="t",
        description="",
        duration=duration,
        step=step,
        initial_backlog=backlog,
        initial_backlog_age=0.0,
        arrivals=ArrivalProfile(per_second, **arrivals),
        seed=3,
        fleet=fleet,
    )


def assert_conserved(run: Run) -> None:
    for step in run.steps:
        assert step.arrived + run.initial_backlog == step.processed + step.backlog, step
        assert step.backlog >= 0


# -- hand-computed cases -------------------------------------------------------------------


def test_fixed_workers_drain_a_backlog_at_the_hand_computed_time() -> None:
    # 2 workers x 5 msg/s = 10/s against 1,000 messages: 100 s.
    run = simulate(scenario(fixed_fleet(2, 5.0), backlog=1_000))
    assert run.summary.drained_at == 100.0
    assert run.summary.initial_cleared_at == 100.0
    assert run.summary.drain is DrainOutcome.DRAINED
    assert [s.processed for s in run.steps[:4]] == [0, 10, 20, 30]
    assert_conserved(run)


def test_constant_arrivals_slow_the_drain_by_the_net_rate() -> None:
    # 10/s processed, 2/s arriving: 1,000 / 8 = 125 s; then every arrival is taken at once.
    run = simulate(scenario(fixed_fleet(2, 5.0), backlog=1_000, per_second=2.0))
    assert run.summary.drained_at == 125.0
    assert run.summary.initial_cleared_at == 100.0  # FIFO: the old messages go first
    assert all(s.backlog == 0 for s in run.steps if s.time >= 125)
    assert run.steps[-1].arrived == 7_200
    assert_conserved(run)


def test_arrivals_faster_than_processing_never_drain() -> None:
    run = simulate(scenario(fixed_fleet(1, 1.0), backlog=10, per_second=1.5, duration=600))
    assert run.summary.drain is DrainOutcome.NEVER
    assert run.summary.drained_at is None
    assert run.summary.final_backlog == 10 + 300
    assert_conserved(run)


def test_the_guides_fleet_at_its_own_rate_drains_in_the_hand_computed_time() -> None:
    # The guide's 30 workers at its 43,200/day each = 15 msg/s, against 600,000/day arriving:
    # 2,800,000 / (15 - 6.944...) = 347,586 s, about 4.0 days.
    fleet = fixed_fleet(30, 43_200 / DAY)
    run = simulate(
        scenario(fleet, backlog=2_800_000, per_second=600_000 / DAY, duration=6 * DAY, step=60)
    )
    expected = 2_800_000 / (15 - 600_000 / DAY)
    assert run.summary.drained_at is not None
    assert expected <= run.summary.drained_at < expected + 60
    assert run.summary.worker_hours == pytest.approx(30 * 6 * 24)
    assert_conserved(run)


def test_fractional_rates_are_carried_as_whole_messages() -> None:
    # 0.3 msg/s: exactly floor(0.3 t) messages by time t, none lost to float rounding.
    run = simulate(scenario(fixed_fleet(1, 0.3), backlog=1_000, duration=200))
    assert [s.processed for s in run.steps] == [math.floor(0.3 * k + 1e-9) for k in range(201)]
    assert_conserved(run)


def test_idle_capacity_is_not_banked() -> None:
    # 1 worker at 10/s, 1 message/s arriving: the spare 9/s never adds up to a later burst.
    run = simulate(scenario(fixed_fleet(1, 10.0), per_second=1.0, duration=100))
    assert all(s.backlog == 0 for s in run.steps)
    assert run.steps[-1].processed == 100


def test_startup_delay_is_honoured() -> None:
    # Policy min 2 starts 2 workers at t=0 (below_min); they process nothing for 30 s.
    run = simulate(scenario(fixed_fleet(2, 5.0, startup=30, ready=False), backlog=1_000))
    first = run.steps[0].decision
    assert first is not None
    assert (first.direction, first.reason, first.desired) == (
        ScaleDirection.OUT,
        ScaleReason.BELOW_MIN,
        2,
    )
    assert all(s.processed == 0 for s in run.steps if s.time <= 30)
    assert (run.steps[29].running, run.steps[29].starting) == (0, 2)
    assert (run.steps[30].running, run.steps[30].starting) == (2, 0)
    assert run.summary.drained_at == 130.0
    assert run.summary.worker_hours == pytest.approx(2 * 3_600 / 3_600)


def test_a_worker_ready_inside_a_step_gets_the_rest_of_that_step() -> None:
    # Step 7 s, ready at 10 s: 4 s of work at 10/s in the step (7, 14].
    run = simulate(
        scenario(fixed_fleet(1, 10.0, startup=10, ready=False), backlog=1_000, step=7, duration=70)
    )
    assert [s.processed for s in run.steps[:4]] == [0, 0, 40, 110]


def test_oldest_age_follows_the_fifo_cohorts() -> None:
    # 1,000 initial messages (age counted from t=0) at 10/s, then 1/s arriving.
    fleet = fixed_fleet(1, 10.0)
    run = simulate(scenario(fleet, backlog=1_000, per_second=1.0, duration=300, step=10))
    assert run.steps[5].oldest_age == 50.0  # the initial cohort is still at the head
    # After the initial backlog the head is a 10 s cohort stamped at its step's start.
    later = [s for s in run.steps if s.time > 120 and s.backlog]
    assert all(s.oldest_age is not None and s.oldest_age <= 20 for s in later)
    assert run.summary.max_oldest_age == run.summary.initial_cleared_at


def test_initial_backlog_age_counts() -> None:
    base = scenario(fixed_fleet(1, 1.0), backlog=100, duration=50)
    run = simulate(replace(base, initial_backlog_age=3_600.0))
    assert run.steps[10].oldest_age == 3_610.0


# -- arrival profiles ----------------------------------------------------------------------


def test_the_daily_cycle_keeps_the_daily_total_and_the_peak_to_trough_ratio() -> None:
    profile = ArrivalProfile(600_000 / DAY, peak_to_trough=4.0, peak_hour=20.0)
    assert profile.cumulative(DAY) == 600_000
    assert profile.cumulative(3 * DAY) == 1_800_000
    peak, trough = profile.rate(20 * 3_600), profile.rate(8 * 3_600)
    assert peak / trough == pytest.approx(4.0)
    assert max(profile.rate(h * 3_600) for h in range(24)) == pytest.approx(peak)


def test_bursts_arrive_at_their_time_or_spread_evenly() -> None:
    instant = ArrivalProfile(0.0, bursts=(Burst(at=100.0, messages=500),))
    assert (instant.cumulative(100.0), instant.cumulative(100.5)) == (0, 500)
    spread = ArrivalProfile(0.0, bursts=(Burst(at=0.0, messages=1_000, over=100.0),))
    assert [spread.cumulative(t) for t in (0, 25, 50, 100, 200)] == [0, 250, 500, 1_000, 1_000]
    run = simulate(scenario(fixed_fleet(1, 1.0), duration=200, bursts=instant.bursts))
    assert run.steps[100].arrived == 0
    assert run.steps[101].arrived == 500
    assert_conserved(run)


# -- conservation, whatever the inputs -----------------------------------------------------


def autoscaled(rates: WorkerRates, **policy: Any) -> Fleet:
    defaults: dict[str, Any] = {
        "min_workers": 1,
        "max_workers": 8,
        "target_backlog_per_worker": 500,
        "scale_out_cooldown": 60.0,
        "scale_in_cooldown": 300.0,
        "scale_out_age": 120.0,
    }
    return Fleet(
        label="auto",
        policy=AutoscalePolicy(**(defaults | policy)),
        rates=rates,
        startup_delay=45.0,
        decision_interval=30.0,
    )


@given(
    backlog=st.integers(0, 20_000),
    per_second=st.floats(0.0, 40.0),
    ratio=st.floats(1.0, 6.0),
    burst=st.integers(0, 5_000),
    burst_at=st.floats(0.0, 7_200.0),
    over=st.sampled_from([0.0, 17.0, 900.0]),
    mean=st.floats(0.05, 30.0),
    distribution=st.sampled_from(list(Distribution)),
    step=st.sampled_from([1.0, 7.0, 30.0]),
)
@settings(max_examples=40, deadline=None)
def test_messages_are_conserved_at_every_step(
    backlog: int,
    per_second: float,
    ratio: float,
    burst: int,
    burst_at: float,
    over: float,
    mean: float,
    distribution: Distribution,
    step: float,
) -> None:
    fleet = autoscaled(WorkerRates(distribution, mean, mean / 3))
    run = simulate(
        scenario(
            fleet,
            backlog=backlog,
            per_second=per_second,
            duration=4 * 3_600.0,
            step=step,
            peak_to_trough=ratio,
            bursts=(Burst(burst_at, burst, over),),
        )
    )
    assert_conserved(run)
    expected = ArrivalProfile(per_second, ratio, 12.0, (Burst(burst_at, burst, over),))
    assert run.steps[-1].arrived == expected.cumulative(run.steps[-1].time)


# -- the policy: the supervisor's own, with its cooldowns ----------------------------------


def busy_run() -> Run:
    """A cycle and bursts that make the policy scale out and in many times."""
    rates = WorkerRates(Distribution.NORMAL, 4.0, 1.0)
    bursts = tuple(Burst(at=h * 3_600.0, messages=6_000) for h in (2, 9, 15, 22, 30))
    base = scenario(
        autoscaled(rates),
        backlog=3_000,
        per_second=6.0,
        duration=2 * DAY,
        step=10,
        peak_to_trough=5.0,
        bursts=bursts,
    )
    return simulate(base)


def test_cooldowns_are_respected() -> None:
    run = busy_run()
    policy = run.fleet.policy
    outs = [e for e in run.events if e.direction is ScaleDirection.OUT and e.reason != "below_min"]
    ins = [e for e in run.events if e.direction is ScaleDirection.IN]
    assert len(outs) >= 5 and len(ins) >= 5, run.events
    for earlier, later in itertools.pairwise(outs):
        assert later.time - earlier.time >= policy.scale_out_cooldown
    for event in ins:
        previous = [e for e in run.events if e.time < event.time]
        assert previous, "a scale-in needs an earlier change to cool down from"
        assert event.time - previous[-1].time >= policy.scale_in_cooldown
    assert_conserved(run)


def test_workers_stay_within_the_policy_limits() -> None:
    run = busy_run()
    assert all(1 <= s.workers <= 8 for s in run.steps[1:])
    assert max(s.workers for s in run.steps) == 8


def test_the_simulation_uses_the_supervisors_policy_class() -> None:
    from sluice.runtime import supervisor

    assert supervisor.ScalingInputs is sluice.scaling.ScalingInputs
    assert supervisor.ScalingMemory is sluice.scaling.ScalingMemory
    assert supervisor.ScalingDecision is sluice.scaling.ScalingDecision
    env = {
        "SLUICE_AUTOSCALE": "2:6",
        "SLUICE_SINK": "postgres",
        "SLUICE_DATABASE_URL": "postgresql://h/d",
    }
    policy = load_settings(env).autoscale_policy
    assert type(policy) is sluice.scaling.AutoscalePolicy
    assert (policy.min_workers, policy.max_workers) == (2, 6)
    loaded = load_scenario(SCENARIOS / "ops-guide.toml")
    for fleet in loaded.fleets:
        assert type(fleet.policy) is sluice.scaling.AutoscalePolicy


@pytest.fixture
def recorded_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Every call of ``AutoscalePolicy.decide``, as (inputs, memory, now, decision, memory)."""
    calls: list[tuple[Any, ...]] = []
    original = AutoscalePolicy.decide

    def spy(
        self: AutoscalePolicy, inputs: ScalingInputs, memory: ScalingMemory, now: float
    ) -> tuple[ScalingDecision, ScalingMemory]:
        decision, after = original(self, inputs, memory, now)
        calls.append((inputs, memory, now, decision, after))
        return decision, after

    monkeypatch.setattr(AutoscalePolicy, "decide", spy)
    yield calls


def test_the_policy_is_called_as_the_supervisor_calls_it(
    recorded_calls: list[tuple[Any, ...]],
) -> None:
    run = busy_run()
    interval = run.fleet.decision_interval
    assert [c[2] for c in recorded_calls] == [k * interval for k in range(len(recorded_calls))]
    assert recorded_calls[0][1] == ScalingMemory()
    for previous, current in itertools.pairwise(recorded_calls):
        assert current[1] is previous[4]  # the memory returned is the memory passed next
    by_time = {s.time: s for s in run.steps}
    starting_seen = False
    for inputs, _, now, decision, _ in recorded_calls[1:]:
        step, before = by_time[now], by_time[now - 10]  # busy_run's step is 10 s
        assert step.decision is decision
        assert inputs.backlog == step.backlog  # visible backlog, as GetQueueAttributes gives
        # current: every worker the decision found, those still starting included.
        assert inputs.current == before.workers
        starting_seen = starting_seen or before.starting > 0
        # oldest_age: the head of the queue while some worker holds messages, else None.
        if inputs.backlog == 0 or before.running == 0:
            assert inputs.oldest_age is None
        else:
            assert inputs.oldest_age == step.oldest_age
    assert starting_seen
    assert any(c[3].reason is ScaleReason.OLDEST_AGE for c in recorded_calls)


def test_the_same_seed_gives_the_same_run() -> None:
    assert busy_run().summary == busy_run().summary


def test_rate_draws_follow_their_distribution() -> None:
    rng = random.Random(5)
    normal = WorkerRates(Distribution.NORMAL, 1.0, 2.0)
    draws = [normal.draw(rng) for _ in range(2_000)]
    assert min(draws) > 0  # truncated at zero by redrawing
    lognormal = WorkerRates(Distribution.LOGNORMAL, 100.0, 30.0)
    draws = [lognormal.draw(rng) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(100.0, rel=0.03)
    assert WorkerRates(Distribution.FIXED, 7.0, 3.0).draw(rng) == 7.0


# -- the shipped scenarios -----------------------------------------------------------------


def test_the_ops_guide_scenario_states_the_guides_figures() -> None:
    loaded = load_scenario(SCENARIOS / "ops-guide.toml")
    assert loaded.initial_backlog == 2_800_000
    assert loaded.arrivals.cumulative(DAY) == 600_000
    guide, sluice_fleet = loaded.fleets
    assert guide.rates.mean * DAY == pytest.approx(43_200)
    assert (guide.policy.min_workers, guide.policy.max_workers) == (10, 30)
    assert guide.policy.target_backlog_per_worker == 50_000
    assert (guide.policy.scale_out_cooldown, guide.policy.scale_in_cooldown) == (60, 300)
    assert (sluice_fleet.policy.min_workers, sluice_fleet.policy.max_workers) == (1, 4)


def test_the_ops_guide_scenario_outcome() -> None:
    guide, sluice_run = simulate_all(load_scenario(SCENARIOS / "ops-guide.toml"))
    assert_conserved(guide)
    assert_conserved(sluice_run)
    # Sluice: 4 workers x ~1,000 msg/s after a 60 s start: 2.8M in about 700 s + 60 s.
    assert sluice_run.summary.drained_at is not None
    assert 700 <= sluice_run.summary.drained_at <= 900
    assert sluice_run.summary.final_workers == 1
    # The guide's 50,000-per-worker target parks ~650k messages: the queue never empties.
    assert guide.summary.drain is DrainOutcome.NEVER
    assert 500_000 < guide.summary.final_backlog < 800_000
    assert guide.summary.max_oldest_age > DAY


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    assert load_scenario(path).duration > 0


# -- scenario files: clear errors ----------------------------------------------------------


def minimal(**extra: Any) -> dict[str, Any]:
    return {"duration": "1h", "arrivals": {"rate": "600000/day"}} | extra


def test_durations_and_rates_take_units() -> None:
    loaded = scenario_from_mapping(
        minimal(
            duration="36h",
            step=90,
            decision_interval="2m",
            startup_delay="2m",
            workers={"mean": "43200/day"},
        )
    )
    assert (loaded.duration, loaded.step, loaded.fleet.startup_delay) == (129_600, 90, 120)
    assert loaded.fleet.decision_interval == 120
    assert loaded.fleet.rates.mean == pytest.approx(0.5)
    assert loaded.arrivals.per_second == pytest.approx(600_000 / DAY)


def test_compare_inherits_what_it_does_not_set() -> None:
    loaded = scenario_from_mapping(
        minimal(
            policy={"min_workers": 2, "max_workers": 9},
            compare={"label": "b", "policy": {"max_workers": 3}},
        )
    )
    assert loaded.compare is not None
    assert (loaded.compare.policy.min_workers, loaded.compare.policy.max_workers) == (2, 3)
    assert loaded.compare.rates == loaded.fleet.rates


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(policy={"scale_in_coldown": 5}), "[policy]: unknown key(s) scale_in_coldown"),
        (minimal(colour="red"), "unknown key(s) colour"),
        (minimal(duration="3 fortnights"), "duration"),
        ({"arrivals": {"rate": 1}}, "duration: required"),
        (minimal(arrivals={}), "[arrivals] rate: required"),
        (minimal(arrivals={"rate": "lots"}), "[arrivals] rate"),
        (minimal(workers={"distribution": "poisson"}), "[workers] distribution: 'poisson'"),
        (minimal(workers={"mean": 0}), "[workers] mean"),
        (minimal(policy={"min_workers": 5, "max_workers": 2}), "[policy]: autoscale range"),
        (minimal(policy={"min_workers": "two"}), "[policy] min_workers: must be a whole"),
        (minimal(step="60s", decision_interval="30s"), "decision_interval: 30s is shorter"),
        (minimal(step="60s"), "decision_interval: 30s (the default) is shorter"),
        (minimal(compare={"policy": {"typo": 1}}), "[compare.policy]: unknown key(s) typo"),
        (minimal(arrivals={"rate": 1, "bursts": [{"at": "1h"}]}), "arrivals.bursts #1"),
        (minimal(initial_backlog=-5), "initial_backlog: must be at least 0"),
    ],
)
def test_scenario_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario_from_mapping(data, "s.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("s.toml")


def test_unreadable_and_invalid_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("duration = [\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
