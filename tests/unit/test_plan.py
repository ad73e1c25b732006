"""`sluice plan`'s arithmetic against hand-computed cases, the ops guide's included."""

from __future__ import annotations

import pytest

from sluice.plan.sizing import (
    GUIDE_LONG_POLL,
    GUIDE_OLD,
    PlanInputs,
    Prices,
    WorkerRate,
    WorkerShape,
    deadline_workers,
    keep_up_workers,
    make_plan,
)
from sluice.plan.units import parse_duration, parse_rate

DAY = 86_400
GUIDE_ARRIVAL = 600_000 / DAY


def figures(plan):  # name -> value
    return {f.name: f.value for f in plan.figures}


def test_the_guides_per_worker_figures_are_reproduced():
    assert GUIDE_OLD.per_second == 2.0
    assert GUIDE_OLD.per_day == 172_800  # "7,200 x 24 = 172,800 messages/day"
    assert GUIDE_LONG_POLL.per_day == 43_200  # "1,800 x 24 = 43,200 messages/day"


def test_the_guides_net_growth_with_one_worker():
    plan = make_plan(PlanInputs(2_800_000, GUIDE_ARRIVAL, GUIDE_OLD))
    # "With 600k incoming/day: Net backlog growth: +427,200 messages/day"
    assert figures(plan)["backlog change/day with 1"] == "+427,200"


def test_the_guides_two_week_fleet_at_its_own_rate():
    # The guide: 11.2M messages in 14 days at 43,200/day per worker -> "Workers needed: 18-20".
    needed = deadline_workers(2_800_000, GUIDE_ARRIVAL, GUIDE_LONG_POLL.per_second, 14 * DAY)
    assert needed == 19  # ceil((2.8M / 1,209,600 + 6.944) / 0.5) = ceil(18.52)
    # And one week: "Workers needed: 37+": ceil((2.8M / 604,800 + 6.944) / 0.5) = ceil(23.15)
    assert deadline_workers(2_800_000, GUIDE_ARRIVAL, 0.5, 7 * DAY) == 24


def test_keep_up_with_headroom():
    assert keep_up_workers(6.944, 2.0, 0.3) == 5  # ceil(9.03 / 2)
    assert keep_up_workers(0, 2.0, 0.3) == 1
    assert keep_up_workers(100.0, 100.0, 0.0) == 1
    assert keep_up_workers(100.0, 100.0, 0.01) == 2


def test_measured_rate_clears_the_guides_backlog_in_minutes():
    plan = make_plan(
        PlanInputs(2_800_000, GUIDE_ARRIVAL, WorkerRate(6000.0, "given"), deadline=14 * DAY)
    )
    assert (plan.workers_to_keep_up, plan.workers_for_deadline, plan.recommended) == (1, 1, 1)
    one = plan.drain_table[0]
    assert one.workers == 1
    assert one.estimate.seconds == pytest.approx(2_800_000 / (6000 - GUIDE_ARRIVAL))


def test_sqs_requests_and_costs_by_hand():
    shape = WorkerShape(
        receive_concurrency=8,
        wait_time_seconds=20,
        batch_max_rows=5000,
        batch_max_age=2.0,
        statements_per_load=5,
    )
    plan = make_plan(
        PlanInputs(0, GUIDE_ARRIVAL, WorkerRate(6000.0, "given"), shape=shape, prices=Prices())
    )
    f = figures(plan)
    assert f["receives/day (full batches)"] == 60_000  # 600,000 / 10
    assert f["deletes/day (DeleteMessageBatch)"] == 60_000
    assert f["empty receives/day (at most)"] == 34_560  # 1 worker x 8 polls x 86,400 / 20
    # 120,000 requests at $0.40/M = $0.048; worst 600,000 + 34,560 + 60,000 = 694,560 = $0.278
    assert f["SQS cost/day"] == "$0.05 to $0.28"
    assert f["SQS cost/day, one call per message"] == "$0.48"  # the guide's 1.2M/day
    # Fargate-style: 1 vCPU x 0.04048 + 2 GB x 0.004445 = 0.04937/h; x 24 = $1.18
    assert f["compute/day at steady state"] == "$1.18"
    # 25,000 msgs/h; one worker flushes at most every 2 s: min(25,000, 1,800) = 1,800 loads
    assert f["warehouse loads/hour"] == 1_800
    assert f["warehouse statements/hour"] == 9_000
    assert f["statements/hour, one INSERT per row"] == 25_000


def test_a_target_worker_count_is_evaluated_as_given():
    plan = make_plan(PlanInputs(1_000_000, 10.0, WorkerRate(100.0, "given"), workers=3))
    assert plan.recommended == 3
    row = next(r for r in plan.drain_table if r.workers == 3)
    assert row.estimate.seconds == pytest.approx(1_000_000 / 290)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("36h", 129_600), ("14d", 1_209_600), (42, 42)],
)
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize(
    ("raw", "per_second"),
    [("7", 7), ("7/s", 7), ("25,000/h", 25_000 / 3600), ("600000/day", 600_000 / DAY)],
)
def test_rates(raw, per_second):
    assert parse_rate(raw) == pytest.approx(per_second)


def test_bad_quantities_say_what_is_expected():
    with pytest.raises(ValueError, match="duration such as"):
        parse_duration("two weeks")
    with pytest.raises(ValueError, match="rate such as"):
        parse_rate("600k/fortnight")
