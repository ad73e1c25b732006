"""Lambda against workers for one arrival rate: `sluice plan --compare-lambda` (pure).

The same figures-with-their-arithmetic as ``sizing``: what an SQS event source mapping would
invoke, for how many GB-seconds, at what price, beside the ECS tasks ``make_plan`` counts
for the same arrivals. Prices are named constants with their source and the date they were
read; every one can be overridden on the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sluice.plan.sizing import DAY, Figure, PlanInputs, keep_up_workers

# AWS Lambda pricing, https://aws.amazon.com/lambda/pricing/ (us-east-1, read 2025-06): the
# first pricing tier of duration (up to 6 billion GB-seconds a month), and requests. The
# monthly free tier (1M requests, 400,000 GB-seconds) is left out: it is per account, and
# usually spent elsewhere.
LAMBDA_GB_SECOND_X86 = 0.0000166667  # USD per GB-second, x86_64
LAMBDA_GB_SECOND_ARM = 0.0000133334  # USD per GB-second, arm64
LAMBDA_PER_MILLION_REQUESTS = 0.20  # USD per million invocations
# Lambda gives a function one full vCPU at 1,769 MB of memory, and CPU in proportion below
# it (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
MB_PER_VCPU = 1_769
# An SQS event source mapping starts with five pollers, each long-polling (20 s) while the
# queue is empty; their ReceiveMessage calls are billed as SQS requests
# (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html#sqs-polling-behavior).
IDLE_POLLERS = 5
POLL_WAIT_SECONDS = 20
# Fixed time per invocation besides the records: the warehouse transaction's round trips
# (PostgreSQL about 5; Redshift's Data API about 0.5-1 s per statement batch). A planning
# guess: measure yours (the EMF line's InvocationSeconds) and pass --lambda-seconds.
INVOCATION_OVERHEAD_SECONDS = 0.5


@dataclass(frozen=True)
class LambdaShape:
    """How the function is configured and what it costs; ``seconds`` overrides the estimate."""

    memory_mb: int = 1_024
    batch_size: int = 1_000
    window_seconds: float = 5.0
    arm: bool = False
    seconds: float | None = None  # measured seconds per invocation, when known
    overhead_seconds: float = INVOCATION_OVERHEAD_SECONDS
    gb_second: float | None = None  # None: the constant for the architecture
    per_million_requests: float = LAMBDA_PER_MILLION_REQUESTS

    @property
    def price_gb_second(self) -> float:
        if self.gb_second is not None:
            return self.gb_second
        return LAMBDA_GB_SECOND_ARM if self.arm else LAMBDA_GB_SECOND_X86


@dataclass(frozen=True)
class LambdaComparison:
    records_per_invocation: float
    invocations_per_day: float
    seconds_per_invocation: float
    gb_seconds_per_day: float
    lambda_per_day: float
    workers: int
    workers_per_day: float
    breakeven_per_second: float  # arrivals at which Lambda costs what one task does
    figures: tuple[Figure, ...]

    @property
    def cheaper(self) -> str:
        return "lambda" if self.lambda_per_day < self.workers_per_day else "workers"


def records_per_invocation(arrival: float, shape: LambdaShape) -> float:
    """What the mapping hands one invocation: what arrives within the window, at most the
    batch size, at least one record."""
    return max(1.0, min(float(shape.batch_size), arrival * shape.window_seconds))


def seconds_per_invocation(records: float, worker_rate: float, shape: LambdaShape) -> float:
    """Measured if given; else the fixed overhead plus the records at the worker's rate,
    slowed in proportion when the function has less than one vCPU."""
    if shape.seconds is not None:
        return shape.seconds
    cpu_share = min(1.0, shape.memory_mb / MB_PER_VCPU)
    return shape.overhead_seconds + records / (worker_rate * cpu_share)


def compare(p: PlanInputs, shape: LambdaShape) -> LambdaComparison:
    arrival = p.arrival_per_second
    rate = p.rate.per_second
    per_call = records_per_invocation(arrival, shape)
    seconds = seconds_per_invocation(per_call, rate, shape)
    gb = shape.memory_mb / 1_024
    invocations = arrival * DAY / per_call if arrival > 0 else 0.0
    gb_seconds = invocations * seconds * gb
    duration_cost = gb_seconds * shape.price_gb_second
    request_cost = invocations * shape.per_million_requests / 1e6
    idle_polls = IDLE_POLLERS * DAY / POLL_WAIT_SECONDS
    polls = idle_polls if arrival <= 0 else max(idle_polls, invocations)
    sqs_cost = polls * p.prices.sqs_per_million_requests / 1e6
    lambda_day = duration_cost + request_cost + sqs_cost
    workers = keep_up_workers(arrival, rate, p.headroom)
    task_day = 24 * p.prices.task_hour
    workers_day = workers * task_day
    per_record = (seconds * gb * shape.price_gb_second + shape.per_million_requests / 1e6) / (
        per_call
    )
    breakeven = task_day / (per_record * DAY) if per_record > 0 else math.inf
    figures = (
        Figure(
            "Lambda records per invocation",
            round(per_call, 1),
            f"max(1, min({shape.batch_size} batch, {arrival:,.3f}/s x "
            f"{shape.window_seconds:g} s window))",
        ),
        Figure(
            "Lambda seconds per invocation",
            round(seconds, 3),
            "given (--lambda-seconds)"
            if shape.seconds is not None
            else f"{shape.overhead_seconds:g} s + {per_call:,.1f} / ({rate:,.0f}/s x "
            f"min(1, {shape.memory_mb} MB / {MB_PER_VCPU} MB per vCPU))",
        ),
        Figure(
            "Lambda invocations/day",
            round(invocations),
            f"{arrival:,.3f}/s x 86,400 / {per_call:,.1f}",
        ),
        Figure(
            "Lambda GB-seconds/day",
            round(gb_seconds, 1),
            f"invocations x {seconds:.3f} s x {gb:g} GB",
        ),
        Figure(
            "Lambda cost/day",
            f"${lambda_day:,.2f}",
            f"{gb_seconds:,.0f} GB-s x ${_price(shape.price_gb_second)} + {invocations:,.0f} x "
            f"${shape.per_million_requests}/million + {polls:,.0f} SQS polls x "
            f"${p.prices.sqs_per_million_requests}/million",
        ),
        Figure(
            "workers cost/day (same arrivals)",
            f"${workers_day:,.2f}",
            f"{workers} tasks to keep up x 24 h x ${p.prices.task_hour:.4f}",
        ),
        Figure(
            "Lambda costs one task's day at",
            f"{breakeven:,.1f} msg/s ({breakeven * DAY:,.0f}/day)",
            f"${task_day:.2f} / (86,400 x ${_price(per_record)} per record, at this batching)",
        ),
        Figure(
            "cheaper for this arrival rate",
            "Lambda" if lambda_day < workers_day else "workers",
            f"${lambda_day:,.2f} vs ${workers_day:,.2f} a day",
        ),
    )
    return LambdaComparison(
        per_call,
        invocations,
        seconds,
        gb_seconds,
        lambda_day,
        workers,
        workers_day,
        breakeven,
        figures,
    )


def _price(value: float) -> str:
    """0.0000166667, not 1.66667e-05: prices as the pricing page writes them."""
    return f"{value:.10f}".rstrip("0").rstrip(".")
