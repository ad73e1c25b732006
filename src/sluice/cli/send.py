"""`sluice send`: the load generator, synthetic events or JSON lines onto the queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from sluice.cli.common import EXIT_CONFIG, cli_context, fail, run_async
from sluice.cli.options import takes_settings
from sluice.cli.progress import counting_progress


@takes_settings
@click.command()
@click.option(
    "--count",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Synthetic AppsFlyer events to send.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Messages per second (default: as fast as possible).",
)
@click.option(
    "--file",
    "source_file",
    type=click.File("r"),
    default=None,
    help="Send these JSON lines instead of synthetic events ('-' for stdin).",
)
@click.option("--malformed-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--duplicate-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def send(
    ctx: click.Context,
    count: int,
    rate: float | None,
    source_file: Any,
    malformed_ratio: float,
    duplicate_ratio: float,
    seed: int,
) -> None:
    """Load generator: put events on SQS_QUEUE_URL at a target rate."""
    from sluice.sources.sqs import sqs_client
    from sluice.sources.sqs_send import Outgoing, SendReport
    from sluice.tools.sender import send_messages
    from sluice.tools.synth import synthetic_stream

    obj = cli_context(ctx)
    settings = obj.settings()
    if not settings.queue_url:
        fail("SQS_QUEUE_URL is required: the queue to send to", EXIT_CONFIG)
    if source_file is not None:
        bodies = [line.rstrip("\n") for line in source_file if line.strip()]
    else:
        bodies = [
            m.body
            for m in synthetic_stream(
                count, malformed_ratio=malformed_ratio, duplicate_ratio=duplicate_ratio, seed=seed
            )
        ]

    async def go(advance: Callable[[int], None]) -> SendReport:
        async with sqs_client(
            settings.aws_region,
            settings.sqs_endpoint_url,
            32,
            obj.credentials(),
            settings.sqs_client,
        ) as client:
            return await send_messages(
                client, str(settings.queue_url), map(Outgoing, bodies), rate=rate, on_sent=advance
            )

    with counting_progress(Console(stderr=True), "sending", len(bodies)) as advance:
        report = run_async(go(advance))
    click.echo(f"sent {len(report.sent)} message(s) to {settings.queue_url}", err=True)
    for index, why in report.failed[:20]:
        click.echo(f"not sent: line/message {index + 1}: {why}", err=True)
    if report.failed:
        fail(f"{len(report.failed)} message(s) could not be sent")
