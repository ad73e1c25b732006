"""`sluice status` and `sluice scale`: read and steer a running supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from sluice.cli.common import EXIT_CONFIG, cli_context, fail, run_async
from sluice.cli.options import takes_settings
from sluice.config import Settings
from sluice.errors import TransientError
from sluice.plan.capacity import format_duration
from sluice.runtime.control import fetch_status, request_control
from sluice.sources.sqs import SqsQueue, sqs_client


async def gather_status(
    settings: Settings, url: str | None, credentials: dict[str, str] | None
) -> dict[str, Any]:
    """The supervisor's document (socket, or --url); else the queue's figures alone."""
    if url:
        return await fetch_status(url)
    socket = settings.control_socket_path
    try:
        return await request_control(socket, "GET", "/status")
    except TransientError:
        # Not running is the usual case (a single worker has no socket): say so plainly,
        # not with the connector's exception.
        missing = f"no supervisor answers at {socket}"
    if not settings.queue_url:
        raise TransientError(f"{missing}, and SQS_QUEUE_URL is not set to read the queue")
    try:
        async with sqs_client(
            settings.aws_region, settings.sqs_endpoint_url, 2, credentials, settings.sqs_client
        ) as client:
            depth = await SqsQueue(client, settings.queue_url).depth()
            dlq = await SqsQueue(client, settings.dlq_url).depth() if settings.dlq_url else None
    except TransientError as exc:
        raise TransientError(f"{missing}, and the queue could not be read: {exc}") from exc
    return {
        "supervisor": None,
        "note": f"{missing}; showing the queue only (workers, throughput and the drain ETA "
        "need a supervisor: sluice run --processes N or --autoscale MIN:MAX)",
        "queue": {
            "visible": depth.visible,
            "in_flight": depth.in_flight,
            "delayed": depth.delayed,
            "dlq": dlq.total if dlq is not None else None,
            "age": 0.0,
        },
    }


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def _dead_letter_health(letters: dict[str, Any]) -> str:
    failures = f"{_count(letters.get('send_failures'))} failed"
    degraded = letters.get("degraded") or []
    if degraded:
        return f"DEGRADED: failing now on {', '.join(degraded)} ({failures})"
    return f"ok ({failures})"


def status_view(doc: dict[str, Any]) -> Group:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    queue = doc.get("queue") or {}
    table.add_row("queue visible", _count(queue.get("visible")))
    table.add_row("in flight", _count(queue.get("in_flight")))
    table.add_row("delayed", _count(queue.get("delayed")))
    table.add_row("dead-letter queue", _count(queue.get("dlq")))
    age = doc.get("oldest_age")
    table.add_row("oldest held message", "-" if age is None else format_duration(age))
    letters = doc.get("dead_letters")
    if letters is not None:
        table.add_row("dead-letter sends", _dead_letter_health(letters))
    workers = doc.get("workers")
    if workers is not None:
        table.add_row(
            "workers",
            f"{workers['running']} running, {workers['desired']} desired "
            f"({doc['supervisor']['mode']}"
            + (f", pinned at {doc['supervisor']['pinned']}" if doc["supervisor"]["pinned"] else "")
            + f"), {workers['restarts']} restarts",
        )
        for name, figures in doc["throughput"].items():
            table.add_row(
                f"throughput {name}",
                f"{_rate(figures['processing'])} processed, {_rate(figures['arrival'])} arriving "
                f"(over {figures['span']:g} s)",
            )
        eta = doc.get("eta")
        table.add_row("drain ETA", "-" if eta is None else eta["text"])
        decision = doc.get("last_decision")
        if decision:
            table.add_row(
                "last decision",
                f"{decision['direction']} -> {decision['desired']} ({decision['reason']})",
            )
    parts: list[Any] = [table]
    if doc.get("note"):
        parts.append(f"[dim]{doc['note']}[/dim]")
    return Group(*parts)


def render_status(doc: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc, separators=(",", ":")))
    else:
        Console().print(status_view(doc))


async def watch_status(
    settings: Settings,
    credentials: dict[str, str] | None,
    *,
    url: str | None,
    every: float,
    as_json: bool,
) -> None:
    """Redraw (or print one JSON line) every ``every`` seconds until interrupted."""
    if as_json:
        while True:
            render_status(await gather_status(settings, url, credentials), as_json=True)
            await asyncio.sleep(every)
    with Live(console=Console(), auto_refresh=False) as live:
        while True:
            doc = await gather_status(settings, url, credentials)
            live.update(status_view(doc), refresh=True)
            await asyncio.sleep(every)


async def scale_supervisor(settings: Settings, workers: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"workers": "auto" if workers == "auto" else int(workers)}
    return await request_control(settings.control_socket_path, "POST", "/scale", payload)


@takes_settings
@click.command()
@click.option("--url", default=None, help="A supervisor's PORT, e.g. http://10.0.0.5:3000.")
@click.option(
    "--watch",
    "every",
    type=click.FloatRange(min=0.5),
    default=None,
    is_flag=False,
    flag_value=5.0,
    help="Refresh every N seconds (default 5) until Ctrl-C.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, url: str | None, every: float | None, as_json: bool) -> None:
    """Queue depth, in flight, DLQ, oldest age, throughput (1 and 5 min), workers, drain ETA.

    Asks the supervisor on SLUICE_CONTROL_SOCKET (or --url); without one, shows the queue's
    own figures from GetQueueAttributes.
    """
    obj = cli_context(ctx)
    settings = obj.settings()
    if every is None:
        render_status(run_async(gather_status(settings, url, obj.credentials())), as_json=as_json)
        return
    with contextlib.suppress(KeyboardInterrupt):
        run_async(watch_status(settings, obj.credentials(), url=url, every=every, as_json=as_json))


@takes_settings
@click.command()
@click.argument("workers")
@click.pass_context
def scale(ctx: click.Context, workers: str) -> None:
    """Set a running supervisor's worker count now (WORKERS), or `auto` to hand it back to
    the autoscaling policy. Talks to SLUICE_CONTROL_SOCKET."""
    if workers != "auto" and not workers.isdigit():
        fail(f"WORKERS={workers!r} is invalid: must be a whole number or 'auto'", EXIT_CONFIG)
    doc = run_async(scale_supervisor(cli_context(ctx).settings(), workers))
    click.echo(
        f"supervisor {doc['supervisor']['pid']}: {doc['workers']['desired']} worker(s) desired, "
        f"{doc['workers']['running']} running ({doc['supervisor']['mode']})",
        err=True,
    )
