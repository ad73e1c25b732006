"""`sluice demo`: the whole path on this machine, reconciled (the report needs the duckdb
extra, so it is imported only when the command runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sluice.cli.common import EXIT_CONFIG, fail
from sluice.config import load_settings
from sluice.errors import ConfigError, SluiceError
from sluice.observe.logging import configure_logging


@click.command()
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
        from sluice.cli.demo_report import run_and_report_demo  # needs the duckdb extra

        ok = run_and_report_demo(messages, database, seed)
    except SluiceError as exc:
        fail(str(exc), EXIT_CONFIG if isinstance(exc, ConfigError) else 1)
    sys.exit(0 if ok else 1)
