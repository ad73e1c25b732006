"""The ``sluice`` group: its settings options, and every command, listed in one place.

The group imports the command modules; they import only ``common`` (and ``options``,
``progress``), never this module, so the command line has no import circle.
"""

from __future__ import annotations

import click

from sluice import __version__
from sluice.cli.common import CliContext
from sluice.cli.config import config
from sluice.cli.demo import demo
from sluice.cli.dlq import dlq
from sluice.cli.init import init_db
from sluice.cli.options import GROUP_EPILOG, settings_options
from sluice.cli.plan import bench, plan
from sluice.cli.send import send
from sluice.cli.simulate import simulate
from sluice.cli.status import scale, status
from sluice.cli.worker import run


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=GROUP_EPILOG,
    commands=[run, status, scale, init_db, send, demo, config, dlq, plan, bench, simulate],
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


def main() -> None:
    cli(prog_name="sluice")
