"""`sluice config show`: the effective settings and where each came from."""

from __future__ import annotations

import json
import os

import click
from rich.console import Console
from rich.table import Table

from sluice.cli.common import cli_context
from sluice.cli.options import takes_settings


@click.group()
def config() -> None:
    """Inspect settings."""


@takes_settings
@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print {setting: {value, source}} JSON.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings, secrets masked, and where each came from: a file, the
    environment, a flag, the default, or derived (computed at start-up)."""
    from sluice.config_sources import setting_sources

    obj = cli_context(ctx)
    rows = setting_sources(os.environ, obj.flags, obj.config_file, obj.settings())
    if as_json:
        click.echo(json.dumps({row.name: row.document() for row in rows}, indent=2))
        return
    console = Console()
    if not console.is_terminal:
        # A pipe or a file: whole values, one setting a line, never cut to a width.
        for row in rows:
            click.echo(f"{row.name}\t{row.variable}\t{row.value or ''}\t{row.source.text()}")
        return
    table = Table("setting", "variable", "value", "source")
    for row in rows:
        table.add_row(row.name, row.variable, row.value or "", row.source.text())
    table.columns[2].overflow = "fold"  # wrap a long value on a narrow terminal, never cut it
    console.print(table)
