"""`sluice run`: one worker in this process, or a supervised fleet of them."""

from __future__ import annotations

import asyncio
import os

import click
from rich.console import Console

from sluice.cli.common import CliContext, chosen_sink, cli_context, run_async
from sluice.cli.options import takes_settings
from sluice.cli.progress import drain_progress
from sluice.config import Settings
from sluice.runtime.collector import CollectorPolicy
from sluice.runtime.worker import run_worker


@takes_settings
@click.command()
@click.option("--drain", is_flag=True, help="Exit once the queue is empty and all is settled.")
@click.option(
    "--processes",
    default=None,
    help="Run N worker processes under a supervisor [env SLUICE_PROCESSES].",
)
@click.option(
    "--autoscale",
    default=None,
    help="Run MIN:MAX worker processes, scaled by queue depth [env SLUICE_AUTOSCALE].",
)
@click.pass_context
def run(ctx: click.Context, drain: bool, processes: str | None, autoscale: str | None) -> None:
    """Consume until stopped (SIGTERM/SIGINT: graceful; a second signal: at once).

    With --processes or --autoscale, a supervisor runs the workers as child processes,
    restarts any that die, and serves all their metrics on PORT.
    """
    obj = cli_context(ctx)
    for name, value in (("processes", processes), ("autoscale", autoscale)):
        if value is not None:
            obj.flags[name] = value
    settings = obj.settings()
    chosen_sink(settings)
    if not settings.enable_consumer:
        if drain:
            click.echo("consumer disabled (ENABLE_SQS_CONSUMER=false): nothing drained", err=True)
            return
        from sluice.runtime.paused import run_paused

        run_async(run_paused(settings))
        return
    if settings.supervised:
        _supervise(obj, settings, drain)
        return
    CollectorPolicy().apply()
    console = Console(stderr=True)
    show = drain and console.is_terminal
    with drain_progress(console, enabled=show) as on_progress:
        summary = run_async(
            run_worker(
                settings, drain=drain, credentials=obj.credentials(), on_progress=on_progress
            )
        )
    c = summary.counters
    click.echo(
        f"{summary.reason.value}: {c.inserted} rows loaded, {c.duplicates} duplicates absorbed, "
        f"{sum(c.dead_lettered.values())} dead-lettered"
        + (
            f" ({c.dead_letter_send_failures} not taken by the DLQ)"
            if c.dead_letter_send_failures
            else ""
        )
        + f", {c.processed / max(summary.seconds, 1e-9):.0f} msg/s",
        err=True,
    )


def _supervise(obj: CliContext, settings: Settings, drain: bool) -> None:
    from sluice.runtime.supervisor import Supervisor

    supervisor = Supervisor(settings, drain=drain, env=os.environ)
    summary = run_async(supervisor.run(asyncio.Event(), obj.credentials()))
    click.echo(
        f"supervisor stopped: {summary.started} worker processes started, "
        f"{summary.restarts} restarts, {summary.scale_events} scaling actions",
        err=True,
    )
