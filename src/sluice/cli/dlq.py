"""`sluice dlq ...`: look at, replay and purge the dead-letter queue."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sluice.cli.common import EXIT_CONFIG, CliContext, cli_context, fail, run_async
from sluice.cli.options import takes_settings
from sluice.cli.progress import counting_progress
from sluice.sources.sqs import SqsQueue, sqs_client
from sluice.sources.sqs_attributes import producer_attributes
from sluice.tools import dlq as ops


def _context(ctx: click.Context) -> tuple[CliContext, str]:
    obj = cli_context(ctx)
    settings = obj.settings()
    if not settings.dlq_url:
        fail("SLUICE_DLQ_URL is required: the dead-letter queue's URL", EXIT_CONFIG)
    return obj, settings.dlq_url


async def _with_client(obj: CliContext, work: Callable[[Any], Any]) -> Any:
    settings = obj.settings()
    async with sqs_client(
        settings.aws_region, settings.sqs_endpoint_url, 16, obj.credentials(), settings.sqs_client
    ) as client:
        return await work(client)


@click.group()
def dlq() -> None:
    """Dead-letter queue: stats, show, replay, purge."""


@takes_settings
@dlq.command()
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Most messages to read for the reason breakdown.",
)
@click.pass_context
def stats(ctx: click.Context, limit: int) -> None:
    """Depth of the DLQ and its messages by reason."""
    obj, url = _context(ctx)

    async def work(client: Any) -> tuple[Any, Any]:
        depth = await SqsQueue(client, url).depth()
        return depth, await ops.reason_counts(client, url, limit)

    depth, reasons = run_async(_with_client(obj, work))
    table = Table("reason", "messages")
    for reason, count in reasons.most_common():
        table.add_row(reason, str(count))
    console = Console()
    console.print(f"DLQ {url}: {depth.visible} visible, {depth.in_flight} in flight")
    console.print(table)


@takes_settings
@dlq.command()
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--full", is_flag=True, help="Whole bodies on a terminal too (a pipe gets them).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter a line.")
@click.pass_context
def show(ctx: click.Context, limit: int, full: bool, as_json: bool) -> None:
    """Show dead letters: id, reason, detail, receive count and the body (cut to the
    terminal's width on a terminal, unless --full)."""
    obj, url = _context(ctx)

    async def work(client: Any) -> list[ops.DeadLetterView]:
        views, _ = await ops.peek(client, url, limit)
        await ops.release(client, url, views)
        return views

    views = run_async(_with_client(obj, work))
    if as_json:
        for view in views:
            click.echo(json.dumps(letter_document(view), ensure_ascii=False))
        return
    console = Console()
    if full or not console.is_terminal:
        # Whole records, never cut: a pipe is read by a program or kept as evidence.
        for view in views:
            click.echo(letter_text(view))
        return
    table = Table("source message", "reason", "detail", "receives", "body")
    table.columns[4].no_wrap = True  # one line per letter; Rich cuts it at the width with "…"
    for view in views:
        table.add_row(
            view.source_message_id,
            view.reason,
            view.detail,
            str(view.message.receive_count),
            view.message.body,
        )
    console.print(table)


def _attribute(data_type: str, value: str | bytes) -> dict[str, str]:
    if isinstance(value, bytes):
        return {"type": data_type, "base64": base64.b64encode(value).decode("ascii")}
    return {"type": data_type, "value": value}


def letter_document(view: ops.DeadLetterView) -> dict[str, Any]:
    """A dead letter as `dlq show --json` prints it; the producer's attributes if it had any
    (Sluice's own sluice.* attributes are the reason, detail and source id fields)."""
    message = view.message
    document: dict[str, Any] = {
        "id": message.message_id,
        "reason": view.reason,
        "detail": view.detail,
        "source_message_id": view.source_message_id,
        "receive_count": message.receive_count,
        "body": message.body,
    }
    attributes = {
        name: _attribute(data_type, value)
        for name, data_type, value in producer_attributes(message)
    }
    if attributes:
        document["attributes"] = attributes
    return document


def letter_text(view: ops.DeadLetterView) -> str:
    doc = letter_document(view)
    lines = [
        f"id: {doc['id']}",
        f"source message: {doc['source_message_id']}",
        f"reason: {doc['reason']}",
        f"detail: {doc['detail']}",
        f"receive count: {doc['receive_count']}",
    ]
    for name, attribute in doc.get("attributes", {}).items():
        shown = attribute.get("value", f"base64:{attribute.get('base64')}")
        lines.append(f"attribute {name} ({attribute['type']}): {shown}")
    lines.append(f"body: {doc['body']}")
    return "\n".join(lines) + "\n"


@takes_settings
@dlq.command()
@click.option(
    "--filter",
    "reasons",
    multiple=True,
    help="Replay only this reason (repeatable), e.g. --filter wrong_type.",
)
@click.option("--limit", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="Messages/second.")
@click.pass_context
def replay(ctx: click.Context, reasons: tuple[str, ...], limit: int, rate: float | None) -> None:
    """Send dead letters back to SQS_QUEUE_URL (after fixing the mapping or the producer)."""
    obj, url = _context(ctx)
    queue_url = obj.settings().queue_url
    if not queue_url:
        fail("SQS_QUEUE_URL is required: the queue to replay into", EXIT_CONFIG)
    if queue_url.rstrip("/").endswith(".fifo"):
        fail(
            f"SQS_QUEUE_URL={queue_url} is a FIFO queue: Sluice supports standard queues only",
            EXIT_CONFIG,
        )
    wanted = frozenset(r.removeprefix("reason=") for r in reasons) or None

    with counting_progress(Console(stderr=True), "replaying", limit) as advance:
        result = run_async(
            _with_client(
                obj,
                lambda client: ops.replay(
                    client, url, queue_url, reasons=wanted, limit=limit, rate=rate, on_sent=advance
                ),
            )
        )
    left = result.skipped + len(result.failed)
    click.echo(f"replayed {result.replayed}, left {left} in the DLQ", err=True)
    for source_id, why in result.failed:
        click.echo(f"not replayed (left in the DLQ): {source_id}: {why}", err=True)
    if result.failed:
        fail(f"{len(result.failed)} dead letter(s) could not be replayed; they stay in the DLQ")


@takes_settings
@dlq.command()
@click.option("--yes", is_flag=True, help="Really delete every message in the DLQ.")
@click.pass_context
def purge(ctx: click.Context, yes: bool) -> None:
    """Delete everything in the DLQ (asks for --yes)."""
    obj, url = _context(ctx)
    if not yes:
        fail("purge deletes every dead letter for good; add --yes to confirm")
    run_async(_with_client(obj, lambda client: ops.purge(client, url)))
    click.echo(f"purged {url}", err=True)
