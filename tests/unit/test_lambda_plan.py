"""`sluice plan --compare-lambda`: Lambda's invocations, GB-seconds and price beside the
workers' for the same arrivals, against hand-computed cases (the ops guide's included)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sluice.cli.root import cli as main
from sluice.plan.lambda_cost import (
    IDLE_POLLERS,
    LAMBDA_GB_SECOND_ARM,
    LAMBDA_GB_SECOND_X86,
    LambdaShape,
    compare,
    records_per_invocation,
    seconds_per_invocation,
)
from sluice.plan.sizing import DOCUMENTED, PlanInputs, Prices, WorkerRate

DAY = 86_400
TASK_DAY = 24 * Prices().task_hour  # 1 vCPU, 2 GB Fargate: $1.18 a day


def test_the_guides_lambda_estimate_is_forty_dollars_a_day_not_a_month() -> None:
    # The guide: "800k invocations/day x 3 seconds avg = 2.4M GB-seconds/day; Cost: ~$40/month"
    guide = LambdaShape(memory_mb=1_024, batch_size=1, window_seconds=0, seconds=3.0)
    c = compare(PlanInputs(0, 800_000 / DAY, DOCUMENTED), guide)
    assert c.invocations_per_day == pytest.approx(800_000)
    assert c.gb_seconds_per_day == pytest.approx(2_400_000)
    duration = 2_400_000 * LAMBDA_GB_SECOND_X86  # $40.00
    requests = 800_000 * 0.20 / 1e6  # $0.16
    polls = 800_000 * 0.40 / 1e6  # $0.32: one ReceiveMessage per invocation at best
    assert c.lambda_per_day == pytest.approx(duration + requests + polls)
    assert round(c.lambda_per_day, 2) == 40.48
    assert c.workers == 1 and c.cheaper == "workers"


def test_batched_invocations_at_the_guides_arrivals_cost_cents() -> None:
    arrival = 600_000 / DAY
    c = compare(PlanInputs(0, arrival, DOCUMENTED), LambdaShape())
    assert c.records_per_invocation == pytest.approx(arrival * 5)  # the 5 s window fills first
    cpu = 1_024 / 1_769
    assert c.seconds_per_invocation == pytest.approx(0.5 + arrival * 5 / (4_493 * cpu))
    invocations = 600_000 / (arrival * 5)
    assert c.invocations_per_day == pytest.approx(invocations)
    expected = invocations * c.seconds_per_invocation * 1.0 * LAMBDA_GB_SECOND_X86
    expected += invocations * 0.20 / 1e6 + max(IDLE_POLLERS * DAY / 20, invocations) * 0.40 / 1e6
    assert c.lambda_per_day == pytest.approx(expected)
    assert c.lambda_per_day < 0.25 and c.workers_per_day == pytest.approx(TASK_DAY)
    assert c.cheaper == "lambda"


def test_an_idle_queue_costs_lambda_only_its_pollers() -> None:
    c = compare(PlanInputs(0, 0.0, DOCUMENTED), LambdaShape())
    assert c.invocations_per_day == 0 and c.gb_seconds_per_day == 0
    assert c.lambda_per_day == pytest.approx(5 * DAY / 20 * 0.40 / 1e6)  # $0.00864
    assert c.workers == 1 and c.cheaper == "lambda"


def test_a_busy_queue_is_cheaper_on_workers_and_the_breakeven_says_where() -> None:
    rate = WorkerRate(4_000.0, "given")
    busy = compare(PlanInputs(0, 2_000.0, rate, headroom=0.3), LambdaShape())
    assert busy.workers == 1 and busy.cheaper == "workers"
    # At the break-even arrival rate (same batching) Lambda's records cost one task's day.
    per_record = (
        busy.seconds_per_invocation * 1.0 * LAMBDA_GB_SECOND_X86 + 0.20 / 1e6
    ) / busy.records_per_invocation
    assert busy.breakeven_per_second == pytest.approx(TASK_DAY / (per_record * DAY))
    assert busy.breakeven_per_second < 2_000


def test_arm_prices_and_overrides() -> None:
    assert LambdaShape(arm=True).price_gb_second == LAMBDA_GB_SECOND_ARM
    assert LambdaShape(arm=True, gb_second=1e-5).price_gb_second == 1e-5
    p = PlanInputs(0, 10.0, DOCUMENTED)
    x86, arm = compare(p, LambdaShape()), compare(p, LambdaShape(arm=True))
    assert arm.lambda_per_day < x86.lambda_per_day


def test_records_and_seconds_per_invocation_bounds() -> None:
    shape = LambdaShape(batch_size=100, window_seconds=2.0, memory_mb=3_538)
    assert records_per_invocation(0.01, shape) == 1.0
    assert records_per_invocation(10.0, shape) == 20.0
    assert records_per_invocation(1_000.0, shape) == 100.0
    # above one vCPU's memory, no faster than the worker's rate
    assert seconds_per_invocation(100.0, 1_000.0, shape) == pytest.approx(0.5 + 0.1)
    assert seconds_per_invocation(100.0, 1_000.0, LambdaShape(seconds=2.5)) == 2.5


def test_the_cli_prints_the_comparison_as_json_and_contacts_nothing() -> None:
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--arrival",
            "800k/day",
            "--compare-lambda",
            "--lambda-seconds",
            "3",
            "--lambda-batch",
            "1",
            "--lambda-window",
            "0",
            "--json",
        ],
        env={"SQS_QUEUE_URL": "http://127.0.0.1:9/000000000000/nowhere"},
    )
    assert result.exit_code == 0, result.output
    (document,) = json.loads(result.output)
    assert document["lambda"]["cheaper"] == "workers"
    assert round(document["lambda"]["lambda_per_day"], 2) == 40.48
    without = CliRunner().invoke(main, ["plan", "--arrival", "7/s", "--json"])
    assert "lambda" not in json.loads(without.output)[0]
