"""The command line: the only place that reads argv and the environment and wires objects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog
from rich.console import Console

from sluice import __version__
from sluice.cli_options import GROUP_EPILOG, settings_options, takes_settings
from sluice.cli_progress import counting_progress, drain_progress
from sluice.config import Settings, load_settings
from sluice.config_sink import SinkKind, require_sink
from sluice.errors import ConfigError, SchemaError, SluiceError
from sluice.local.emulator import EMULATOR_CREDENTIALS
from sluice.observe.logging import configure_logging
from sluice.runtime.collector import CollectorPolicy
from sluice.runtime.worker import build_sink, run_worker, sink_mapping

T = TypeVar("T")
EXIT_CONFIG = 2
EXIT_SCHEMA = 3


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"sluice: error: {message}", err=True)
    sys.exit(code)


@dataclass
class CliContext:
    config_file: str | None
    flags: dict[str, object]
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(os.environ, self.flags, self.config_file)
            except ConfigError as exc:
                fail(str(exc), EXIT_CONFIG)
            configure_logging(self._settings.log_format, self._settings.log_level)
        return self._settings

    def credentials(self) -> dict[str, str] | None:
        """Dummy keys for an emulator endpoint when none are configured; else AWS's chain."""
        s = self.settings()
        endpoints = (s.sqs_endpoint_url, s.redshift.s3_endpoint_url, s.redshift.data_endpoint_url)
        local = any(e is not None for e in endpoints)
        configured = any(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE"))
        return EMULATOR_CREDENTIALS if local and not configured else None


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the command's coroutine; translate Sluice errors into one line and an exit code."""
    try:
        return asyncio.run(coroutine)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except SchemaError as exc:
        fail(f"{exc} (`sluice init-db` creates the table, or adds what it lacks)", EXIT_SCHEMA)
    except SluiceError as exc:
        fail(str(exc))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=GROUP_EPILOG,
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file of settings (lowest priority) [env SLUICE_CONFIG]",
)
@settings_options
@click.version_option(__version__, prog_name="sluice")
@click.pass_context
def cli(ctx: click.Context, /, config_file: str | None, **flags: object) -> None:
    """Drain an SQS queue into a warehouse: many long polls, micro-batched COPY, idempotent
    merge, deletes only after commit.

    Settings come from --config TOML, then environment variables, then these options.
    """
    ctx.obj = CliContext(config_file, flags)


def _obj(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj


@takes_settings
@cli.command()
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
    obj = _obj(ctx)
    for name, value in (("processes", processes), ("autoscale", autoscale)):
        if value is not None:
            obj.flags[name] = value
    settings = obj.settings()
    _chosen_sink(settings)
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


@takes_settings
@cli.command()
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
    from sluice.cli_status import gather_status, render_status, watch_status

    obj = _obj(ctx)
    settings = obj.settings()
    if every is None:
        render_status(run_async(gather_status(settings, url, obj.credentials())), as_json=as_json)
        return
    with contextlib.suppress(KeyboardInterrupt):
        run_async(watch_status(settings, obj.credentials(), url=url, every=every, as_json=as_json))


@takes_settings
@cli.command()
@click.argument("workers")
@click.pass_context
def scale(ctx: click.Context, workers: str) -> None:
    """Set a running supervisor's worker count now (WORKERS), or `auto` to hand it back to
    the autoscaling policy. Talks to SLUICE_CONTROL_SOCKET."""
    from sluice.cli_status import scale_supervisor

    if workers != "auto" and not workers.isdigit():
        fail(f"WORKERS={workers!r} is invalid: must be a whole number or 'auto'", EXIT_CONFIG)
    doc = run_async(scale_supervisor(_obj(ctx).settings(), workers))
    click.echo(
        f"supervisor {doc['supervisor']['pid']}: {doc['workers']['desired']} worker(s) desired, "
        f"{doc['workers']['running']} running ({doc['supervisor']['mode']})",
        err=True,
    )


def _chosen_sink(settings: Settings) -> SinkKind:
    """The warehouse `run` and `init-db` load into: never an embedded file by default."""
    try:
        kind = require_sink(settings)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    if settings.sink_inferred_from:
        structlog.get_logger("sluice").info(
            "sink_inferred", sink=kind.value, inferred_from=settings.sink_inferred_from
        )
    return kind


@takes_settings
@cli.command("init-db")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the CREATE TABLE for the configured sink and exit; connect to nothing.",
)
@click.option(
    "--apply",
    "apply_changes",
    is_flag=True,
    help="Make the listed changes to an existing table: add missing columns and the unique "
    "index on dedupe_key. Nothing is ever dropped or retyped.",
)
@click.pass_context
def init_db(ctx: click.Context, print_only: bool, apply_changes: bool) -> None:
    """Create the target table from the mapping; on an existing table, list what it lacks
    and, with --apply, add it."""
    from sluice.cli_init import create_or_adopt, report
    from sluice.sinks.base import Sink

    obj = _obj(ctx)
    settings = obj.settings()
    kind = _chosen_sink(settings)
    mapping = sink_mapping(settings)
    if print_only:
        from sluice.sinks.profiles import PROFILES
        from sluice.sinks.sql import create_table_sql

        ddl = create_table_sql(PROFILES[kind].dialect, mapping, settings.redshift.sort_key)
        click.echo(ddl + ";")
        return

    def make_sink() -> Sink:
        return build_sink(settings, mapping, credentials=obj.credentials())

    created, plan, applied = run_async(create_or_adopt(make_sink, apply=apply_changes))
    report(mapping.table, kind.value, created, plan, applied)


@takes_settings
@cli.command()
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
    from sluice.sender import Outgoing, SendReport, send_messages
    from sluice.sources.sqs import sqs_client
    from sluice.synth import synthetic_stream

    obj = _obj(ctx)
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


@cli.command()
@click.option("--messages", type=click.IntRange(100), default=100_000, show_default=True)
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sluice-demo.duckdb"),
    show_default=True,
)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(messages: int, database: Path, seed: int) -> None:
    """Emulator + DLQ + synthetic AppsFlyer events -> DuckDB, then reconcile every count."""
    configure_logging(load_settings({}).log_format, "warning")
    try:
        from sluice.cli_report import run_and_report_demo  # needs the duckdb extra

        ok = run_and_report_demo(messages, database, seed)
    except SluiceError as exc:
        fail(str(exc), EXIT_CONFIG if isinstance(exc, ConfigError) else 1)
    sys.exit(0 if ok else 1)


def main() -> None:
    from sluice.cli_config import config
    from sluice.cli_dlq import dlq
    from sluice.cli_plan import bench, plan
    from sluice.cli_simulate import simulate

    for command in (config, dlq, plan, bench, simulate):
        cli.add_command(command)
    cli(prog_name="sluice")
