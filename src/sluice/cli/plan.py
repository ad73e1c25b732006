"""`sluice plan` and `sluice bench`: how many workers, for how long, at what cost."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sluice.cli.common import EXIT_CONFIG, CliContext, cli_context, fail, run_async
from sluice.cli.options import takes_settings
from sluice.cli.status import gather_status
from sluice.config import Settings
from sluice.errors import SluiceError
from sluice.plan.lambda_cost import (
    LAMBDA_GB_SECOND_ARM,
    LAMBDA_GB_SECOND_X86,
    LAMBDA_PER_MILLION_REQUESTS,
    LambdaComparison,
    LambdaShape,
    compare,
)
from sluice.plan.sizing import (
    DOCUMENTED,
    GUIDE_LONG_POLL,
    GUIDE_OLD,
    Plan,
    PlanInputs,
    Prices,
    WorkerRate,
    WorkerShape,
    make_plan,
)
from sluice.plan.units import parse_count, parse_duration, parse_rate
from sluice.tools.benchmark import BenchResult, run_benchmark

NAMED_RATES = {"documented": DOCUMENTED, "guide": GUIDE_OLD, "guide-long-poll": GUIDE_LONG_POLL}


@takes_settings
@click.command()
@click.option("--messages", type=click.IntRange(1000), default=100_000, show_default=True)
@click.option(
    "--local/--configured",
    default=None,
    help="Use a local SQS emulator (default when no SQS endpoint or queue is configured), "
    "or the configured SQS (it creates and deletes a scratch queue sluice-bench-*).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def bench(ctx: click.Context, messages: int, local: bool | None, as_json: bool) -> None:
    """Measure one worker's sustainable rate into the configured sink, losing nothing.

    A scratch queue is filled with MESSAGES distinct synthetic events and drained by one
    `sluice run --drain` process into a scratch table, which is then counted and dropped.
    """
    obj = cli_context(ctx)
    result = measure(obj, messages, local)
    if as_json:
        click.echo(json.dumps(bench_document(result)))
        return
    click.echo(
        f"{result.rate:,.0f} msg/s sustained  {result.cpu_us_per_message:.1f} CPU us/msg  "
        f"peak RSS {result.peak_rss_mb:.0f} MB"
    )
    click.echo(
        f"{result.messages:,} messages into {result.sink}: drained in "
        f"{result.drain_seconds or 0:.1f} s; process {result.usage.wall:.1f} s with start-up "
        f"({result.rate_with_startup:,.0f} msg/s); SQS {result.endpoint}"
    )
    verdict = "every message loaded once" if result.exact else "MISMATCH"
    click.echo(
        f"rows {result.rows:,} of {result.messages:,}, {result.left_in_queue} left: {verdict}"
    )
    if not result.exact:
        raise SystemExit(1)


def measure(obj: CliContext, messages: int, local: bool | None) -> BenchResult:
    settings = obj.settings()
    use_local = (
        local
        if local is not None
        else settings.sqs_endpoint_url is None and (settings.queue_url is None)
    )
    try:
        return run_benchmark(settings, messages, local=use_local, credentials=obj.credentials())
    except SluiceError as exc:
        fail(str(exc))


def bench_document(result: BenchResult) -> dict[str, Any]:
    return {
        "messages": result.messages,
        "rows": result.rows,
        "left_in_queue": result.left_in_queue,
        "exact": result.exact,
        "rate": round(result.rate, 1),
        "rate_with_startup": round(result.rate_with_startup, 1),
        "drain_seconds": result.drain_seconds,
        "cpu_us_per_message": round(result.cpu_us_per_message, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "wall_seconds": round(result.usage.wall, 2),
        "sink": result.sink,
    }


@takes_settings
@click.command()
@click.option(
    "--backlog",
    default="0",
    show_default=True,
    help="Messages waiting: 2800000, 2.8M, 600k, 1.5B; or `queue` (reads the queue's depth).",
)
@click.option(
    "--arrival",
    default="0",
    show_default=True,
    help="Arrival rate: 7/s, 36000/h, 600k/day; or `queue` (a supervisor's 5-min figure).",
)
@click.option(
    "--worker-rate",
    "rates",
    multiple=True,
    help="Per-worker rate: 6000/s, `documented` (the default: "
    f"{DOCUMENTED.per_second:,.0f}/s, the slowest Redshift-path run in docs/performance.md), "
    "`guide` (10 msgs every 5 s), `guide-long-poll` (10 every 20 s). Repeat to compare.",
)
@click.option(
    "--measure",
    "measure_rate",
    is_flag=True,
    help="Measure one worker with `sluice bench` (fills a scratch queue, creates and drops a "
    "scratch table in the configured sink) and plan on that rate, beside any --worker-rate.",
)
@click.option("--deadline", default=None, help="Clear the backlog within: 14d, 36h, 90m...")
@click.option("--workers", type=click.IntRange(1), default=None, help="Evaluate this count.")
@click.option("--headroom", type=click.FloatRange(0, 10), default=0.3, show_default=True)
@click.option("--bench-messages", type=click.IntRange(1000), default=50_000, show_default=True)
@click.option(
    "--sqs-price",
    type=float,
    default=Prices.sqs_per_million_requests,
    show_default=True,
    help="USD per million SQS requests.",
)
@click.option("--vcpu-hour", type=float, default=Prices.vcpu_hour, show_default=True)
@click.option("--gb-hour", type=float, default=Prices.gb_hour, show_default=True)
@click.option("--task-vcpu", type=float, default=Prices.task_vcpu, show_default=True)
@click.option("--task-gb", type=float, default=Prices.task_gb, show_default=True)
@click.option("--statements-per-load", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--compare-lambda",
    is_flag=True,
    help="Also price the same arrivals through the Lambda handler (docs/lambda.md).",
)
@click.option("--lambda-memory", type=click.IntRange(128, 10_240), default=1_024, show_default=True)
@click.option("--lambda-batch", type=click.IntRange(1, 10_000), default=1_000, show_default=True)
@click.option(
    "--lambda-window",
    type=click.FloatRange(0, 300),
    default=5.0,
    show_default=True,
    help="MaximumBatchingWindowInSeconds.",
)
@click.option(
    "--lambda-seconds",
    type=click.FloatRange(0.001, 900),
    default=None,
    help="Measured seconds per invocation (the EMF line's InvocationSeconds); else estimated.",
)
@click.option("--lambda-arm", is_flag=True, help="arm64 prices (the zip must be built for it).")
@click.option(
    "--lambda-gb-second",
    type=float,
    default=None,
    help=f"USD per GB-second [default: {LAMBDA_GB_SECOND_X86} x86_64, "
    f"{LAMBDA_GB_SECOND_ARM} arm64].",
)
@click.option(
    "--lambda-request-price",
    type=float,
    default=LAMBDA_PER_MILLION_REQUESTS,
    show_default=True,
    help="USD per million invocations.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
@click.pass_context
def plan(
    ctx: click.Context,
    backlog: str,
    arrival: str,
    rates: tuple[str, ...],
    measure_rate: bool,
    deadline: str | None,
    workers: int | None,
    headroom: float,
    bench_messages: int,
    sqs_price: float,
    vcpu_hour: float,
    gb_hour: float,
    task_vcpu: float,
    task_gb: float,
    statements_per_load: int,
    compare_lambda: bool,
    lambda_memory: int,
    lambda_batch: int,
    lambda_window: float,
    lambda_seconds: float | None,
    lambda_arm: bool,
    lambda_gb_second: float | None,
    lambda_request_price: float,
    as_json: bool,
) -> None:
    """Workers needed to clear a backlog by a deadline and keep up after, drain times,
    steady state, SQS requests and cost, compute cost, warehouse statements: with the
    arithmetic shown.

    Plain arithmetic: it contacts nothing unless asked (`--measure`, or `queue` for
    --backlog/--arrival).
    """
    obj = cli_context(ctx)
    chosen = list(rates) or ([] if measure_rate else ["documented"])
    if measure_rate and "measure" not in chosen:
        chosen.append("measure")
    settings = obj.settings()
    try:
        seconds = parse_duration(deadline) if deadline else None
        arrival_rate = _arrival(obj, settings, arrival)
        waiting = _backlog(obj, settings, backlog)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    shape = WorkerShape(
        receive_concurrency=settings.receive_concurrency,
        wait_time_seconds=settings.wait_time_seconds,
        batch_max_rows=settings.batch_max_rows,
        batch_max_age=settings.batch_max_age,
        statements_per_load=statements_per_load,
    )
    prices = Prices(sqs_price, vcpu_hour, gb_hour, task_vcpu, task_gb)
    plans = [
        make_plan(
            PlanInputs(
                waiting,
                arrival_rate,
                _rate(obj, r, bench_messages),
                seconds,
                workers,
                headroom,
                shape,
                prices,
            )
        )
        for r in chosen
    ]
    shape_l = LambdaShape(
        lambda_memory,
        lambda_batch,
        lambda_window,
        lambda_arm,
        lambda_seconds,
        gb_second=lambda_gb_second,
        per_million_requests=lambda_request_price,
    )
    lambdas = [compare(p.inputs, shape_l) if compare_lambda else None for p in plans]
    if as_json:
        documents = [
            plan_document(p) | ({"lambda": lambda_document(c)} if c else {})
            for p, c in zip(plans, lambdas, strict=True)
        ]
        click.echo(json.dumps(documents, indent=2))
        return
    console = Console()
    for one, versus in zip(plans, lambdas, strict=True):
        print_plan(console, one)
        if versus is not None:
            print_lambda(console, versus)


def _rate(obj: CliContext, raw: str, bench_messages: int) -> WorkerRate:
    if raw in NAMED_RATES:
        return NAMED_RATES[raw]
    if raw == "measure":
        result = measure(obj, bench_messages, None)
        if not result.exact:
            fail("the benchmark did not load every message exactly once; not planning on it")
        return WorkerRate(result.rate, f"measured by sluice bench ({result.messages:,} messages)")
    try:
        return WorkerRate(parse_rate(raw), "given")
    except ValueError as exc:
        fail(f"--worker-rate: {exc}", EXIT_CONFIG)


def _backlog(obj: CliContext, settings: Settings, raw: str) -> int:
    if raw != "queue":
        try:
            return parse_count(raw)
        except ValueError as exc:
            raise ValueError(f"--backlog: {exc}, or `queue`") from None
    doc = run_async(gather_status(settings, None, obj.credentials()))
    queue = doc["queue"]
    return int(queue["visible"] + queue["in_flight"] + queue["delayed"])


def _arrival(obj: CliContext, settings: Settings, raw: str) -> float:
    if raw != "queue":
        try:
            return parse_rate(raw)
        except ValueError as exc:
            raise ValueError(f"--arrival: {exc}, or `queue`") from None
    doc = run_async(gather_status(settings, None, obj.credentials()))
    arrival = (doc.get("throughput") or {}).get("5m", {}).get("arrival")
    if arrival is None:
        fail("--arrival queue needs a running supervisor with a few minutes of history", 1)
    return float(arrival)


def plan_document(one: Plan) -> dict[str, Any]:
    return {
        "inputs": {
            "backlog": one.inputs.backlog,
            "arrival_per_second": one.inputs.arrival_per_second,
            "worker_rate": asdict(one.inputs.rate),
            "deadline_seconds": one.inputs.deadline,
            "headroom": one.inputs.headroom,
            "shape": asdict(one.inputs.shape),
            "prices": asdict(one.inputs.prices),
        },
        "workers_to_keep_up": one.workers_to_keep_up,
        "workers_for_deadline": one.workers_for_deadline,
        "recommended": one.recommended,
        "drain": [
            {
                "workers": row.workers,
                "verdict": row.estimate.verdict.value,
                "seconds": row.estimate.seconds,
                "text": row.estimate.text(),
            }
            for row in one.drain_table
        ],
        "figures": [asdict(f) for f in one.figures],
    }


def print_plan(console: Console, one: Plan) -> None:
    title = (
        f"{one.inputs.rate.per_second:,.2f} msg/s per worker ({one.inputs.rate.source}): "
        f"[bold]{one.recommended} worker(s)[/bold]"
    )
    figures = Table("figure", "value", "arithmetic", title=title, title_justify="left")
    for f in one.figures:
        value = f"{f.value:,}" if isinstance(f.value, int | float) else f.value
        figures.add_row(f.name, value, f.how)
    console.print(figures)
    drains = Table(
        "workers", "drain time", title="drain time by worker count", title_justify="left"
    )
    for row in one.drain_table:
        drains.add_row(str(row.workers), row.estimate.text())
    console.print(drains)


def lambda_document(c: LambdaComparison) -> dict[str, Any]:
    return {
        "records_per_invocation": c.records_per_invocation,
        "invocations_per_day": c.invocations_per_day,
        "seconds_per_invocation": c.seconds_per_invocation,
        "gb_seconds_per_day": c.gb_seconds_per_day,
        "lambda_per_day": c.lambda_per_day,
        "workers": c.workers,
        "workers_per_day": c.workers_per_day,
        "breakeven_per_second": c.breakeven_per_second,
        "cheaper": c.cheaper,
        "figures": [asdict(f) for f in c.figures],
    }


def print_lambda(console: Console, c: LambdaComparison) -> None:
    title = f"Lambda or workers for these arrivals: [bold]{c.cheaper}[/bold] cost less"
    table = Table("figure", "value", "arithmetic", title=title, title_justify="left")
    for f in c.figures:
        value = f"{f.value:,}" if isinstance(f.value, int | float) else f.value
        table.add_row(f.name, value, f.how)
    console.print(table)
