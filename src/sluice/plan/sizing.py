"""How many workers, for how long, at what cost: `sluice plan`'s arithmetic (pure).

Every figure carries the formula it came from, so the table can explain itself and a reader
can redo the sums by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sluice.plan.capacity import DrainEstimate, drain_eta, format_duration

DAY = 86_400.0
HOUR = 3_600.0
SQS_BATCH = 10  # ReceiveMessage and DeleteMessageBatch both take at most 10 messages


@dataclass(frozen=True)
class WorkerRate:
    """One worker's sustained rate and where the figure came from."""

    per_second: float
    source: str

    @classmethod
    def from_polling(cls, messages_per_poll: int, poll_interval: float, source: str) -> WorkerRate:
        return cls(messages_per_poll / poll_interval, source)

    @property
    def per_day(self) -> float:
        return self.per_second * DAY


# The ops guide's two assumptions, as it states them.
GUIDE_OLD = WorkerRate.from_polling(10, 5.0, "ops guide: one poll of 10 messages every 5 s")
GUIDE_LONG_POLL = WorkerRate.from_polling(10, 20.0, "ops guide: ~3 polls of 10 a minute")
# What `sluice plan` assumes unless told or asked to measure: the slowest of the 11 measured
# runs of the Redshift path in docs/performance.md (median 5,121 msg/s; 2 cores, the emulator
# and the stand-in warehouse on the same machine, 100 ms added to every warehouse round trip).
# The slowest of the documented figures, so a plan made on it errs towards more workers.
DOCUMENTED = WorkerRate(
    4_493.0,
    "documented: the slowest Redshift-path run in docs/performance.md; --measure for yours",
)


@dataclass(frozen=True)
class Prices:
    """USD. Defaults: SQS standard requests; AWS Fargate Linux/x86 in us-east-1 (inputs)."""

    sqs_per_million_requests: float = 0.40
    vcpu_hour: float = 0.04048
    gb_hour: float = 0.004445
    task_vcpu: float = 1.0
    task_gb: float = 2.0

    @property
    def task_hour(self) -> float:
        return self.task_vcpu * self.vcpu_hour + self.task_gb * self.gb_hour


@dataclass(frozen=True)
class WorkerShape:
    """What one worker does per call and per load: from its settings."""

    receive_concurrency: int = 8
    wait_time_seconds: int = 20
    batch_max_rows: int = 5_000
    batch_max_age: float = 2.0
    statements_per_load: int = 5  # PostgreSQL: CREATE TEMP, BEGIN, COPY, INSERT..SELECT, COMMIT


@dataclass(frozen=True)
class PlanInputs:
    backlog: int
    arrival_per_second: float
    rate: WorkerRate
    deadline: float | None = None  # seconds to clear the backlog in
    workers: int | None = None  # or: a worker count to evaluate
    headroom: float = 0.3  # spare capacity kept at steady state (0.3 = run at <= 77%)
    shape: WorkerShape = field(default_factory=WorkerShape)
    prices: Prices = field(default_factory=Prices)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | str
    how: str


@dataclass(frozen=True)
class DrainRow:
    workers: int
    estimate: DrainEstimate


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    workers_to_keep_up: int
    workers_for_deadline: int | None
    recommended: int
    drain_table: tuple[DrainRow, ...]
    figures: tuple[Figure, ...]


def keep_up_workers(arrival: float, rate: float, headroom: float) -> int:
    if arrival <= 0:
        return 1
    return max(1, math.ceil(arrival * (1 + headroom) / rate))


def deadline_workers(backlog: int, arrival: float, rate: float, deadline: float) -> int:
    """Clear ``backlog`` within ``deadline`` while ``arrival`` keeps coming."""
    return max(1, math.ceil((backlog / deadline + arrival) / rate))


def make_plan(inputs: PlanInputs) -> Plan:
    rate = inputs.rate.per_second
    if rate <= 0:
        raise ValueError("the worker rate must be above zero")
    keep = keep_up_workers(inputs.arrival_per_second, rate, inputs.headroom)
    by_deadline = (
        deadline_workers(inputs.backlog, inputs.arrival_per_second, rate, inputs.deadline)
        if inputs.deadline
        else None
    )
    recommended = inputs.workers or max(keep, by_deadline or 0)
    counts = _counts_to_show(recommended, keep)
    table = tuple(
        DrainRow(n, drain_eta(inputs.backlog, n * rate, inputs.arrival_per_second)) for n in counts
    )
    figures = (
        *_rate_figures(inputs, keep, by_deadline, recommended),
        *_sqs_figures(inputs, keep),
        *_compute_figures(inputs, recommended, keep),
        *_warehouse_figures(inputs, keep),
    )
    return Plan(inputs, keep, by_deadline, recommended, table, figures)


def _counts_to_show(recommended: int, keep: int) -> list[int]:
    around = {1, 2, keep, recommended, 2 * recommended}
    around |= {max(1, recommended // 2), recommended + 1, max(1, recommended - 1)}
    return sorted(n for n in around if n <= max(64, 2 * recommended))


def _rate_figures(
    p: PlanInputs, keep: int, by_deadline: int | None, recommended: int
) -> list[Figure]:
    rate = p.rate.per_second
    arrival = p.arrival_per_second
    figures = [
        Figure("worker rate", f"{rate:,.2f} msg/s", p.rate.source),
        Figure("per worker per day", round(p.rate.per_day), f"{rate:,.2f} x 86,400"),
        Figure("arrivals per day", round(arrival * DAY), f"{arrival:,.3f}/s x 86,400"),
        Figure(
            "workers to keep up",
            keep,
            f"ceil({arrival:,.3f} x (1 + {p.headroom:g} headroom) / {rate:,.2f})",
        ),
    ]
    if by_deadline is not None and p.deadline is not None:
        figures.append(
            Figure(
                f"workers to clear the backlog in {format_duration(p.deadline)}",
                by_deadline,
                f"ceil(({p.backlog:,} / {p.deadline:,.0f} s + {arrival:,.3f}) / {rate:,.2f})",
            )
        )
    for n in sorted({1, recommended}):
        change = (arrival - n * rate) * DAY
        figures.append(
            Figure(
                f"backlog change/day with {n}",
                f"{change:+,.0f}",
                f"({arrival:,.3f} - {n} x {rate:,.2f}) x 86,400",
            )
        )
    eta = drain_eta(p.backlog, recommended * rate, arrival)
    figures.append(
        Figure(f"drain time with {recommended}", eta.text(), "backlog / (n x rate - arrivals)")
    )
    figures.append(
        Figure(
            f"steady state with {keep}",
            f"{arrival / (keep * rate):.0%} busy",
            f"{arrival:,.3f} / ({keep} x {rate:,.2f})",
        )
    )
    return figures


def _sqs_figures(p: PlanInputs, keep: int) -> list[Figure]:
    """Requests a day at steady state, with Sluice's batching and with per-message calls."""
    daily = p.arrival_per_second * DAY
    s = p.shape
    pollers = keep * s.receive_concurrency
    receives_full = math.ceil(daily / SQS_BATCH)
    idle_polls = math.ceil(pollers * DAY / max(s.wait_time_seconds, 1))
    deletes = math.ceil(daily / SQS_BATCH)
    busiest = receives_full + deletes
    # Sparse arrivals give one message per receive, and idle pollers an empty receive per
    # long-poll wait: the worst case, counted at full price.
    worst = math.ceil(daily) + idle_polls + deletes
    per_message = 2 * math.ceil(daily)
    price = p.prices.sqs_per_million_requests
    return [
        Figure("receives/day (full batches)", receives_full, f"{daily:,.0f} / 10"),
        Figure(
            "empty receives/day (at most)",
            idle_polls,
            f"{keep} workers x {s.receive_concurrency} polls x 86,400 / "
            f"{s.wait_time_seconds} s wait",
        ),
        Figure("deletes/day (DeleteMessageBatch)", deletes, f"{daily:,.0f} / 10"),
        Figure(
            "visibility extensions/day",
            0,
            "none while loads finish inside visibility/6; else one call per 10 held messages",
        ),
        Figure(
            "SQS cost/day",
            f"${busiest * price / 1e6:,.2f} to ${worst * price / 1e6:,.2f}",
            f"({busiest:,} busy .. {worst:,} sparse requests) x ${price}/million",
        ),
        Figure(
            "SQS cost/day, one call per message",
            f"${per_message * price / 1e6:,.2f}",
            f"{per_message:,} requests (receive + delete per message, as the old consumer)",
        ),
    ]


def _compute_figures(p: PlanInputs, workers: int, keep: int) -> list[Figure]:
    pr = p.prices
    per_task_hour = pr.task_hour
    drain = drain_eta(p.backlog, workers * p.rate.per_second, p.arrival_per_second)
    figures = [
        Figure(
            "compute per task-hour",
            f"${per_task_hour:.4f}",
            f"{pr.task_vcpu:g} vCPU x ${pr.vcpu_hour} + {pr.task_gb:g} GB x ${pr.gb_hour}",
        ),
        Figure(
            "compute/day at steady state",
            f"${keep * 24 * per_task_hour:,.2f}",
            f"{keep} tasks x 24 h x ${per_task_hour:.4f}",
        ),
    ]
    if drain.seconds:
        hours = drain.seconds / HOUR
        figures.append(
            Figure(
                "compute for the drain",
                f"${workers * hours * per_task_hour:,.2f}",
                f"{workers} tasks x {hours:,.1f} h x ${per_task_hour:.4f}",
            )
        )
    return figures


def _warehouse_figures(p: PlanInputs, keep: int) -> list[Figure]:
    hourly = p.arrival_per_second * HOUR
    s = p.shape
    by_rows = hourly / s.batch_max_rows
    # Under light load a worker flushes on age, not rows: at most one load per batch_max_age.
    by_age = keep * HOUR / s.batch_max_age
    loads = max(by_rows, min(hourly, by_age))
    return [
        Figure(
            "warehouse loads/hour",
            round(loads),
            f"max({hourly:,.0f} / {s.batch_max_rows} rows, min({hourly:,.0f}, "
            f"{keep} x 3,600 / {s.batch_max_age:g} s))",
        ),
        Figure(
            "warehouse statements/hour",
            round(loads * s.statements_per_load),
            f"loads x {s.statements_per_load} statements",
        ),
        Figure(
            "statements/hour, one INSERT per row",
            round(hourly),
            "one statement per message, as the old consumer",
        ),
    ]
