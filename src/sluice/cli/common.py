"""What every command shares: the settings context, the exit codes, and the translation of
Sluice's errors into one line and a code. Imported by the command modules and the root
group; it imports none of them, so no command depends on another through the group."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
import structlog

from sluice.config import Settings, load_settings
from sluice.config_sink import SinkKind, require_sink
from sluice.errors import ConfigError, SchemaError, SluiceError
from sluice.local.emulator import EMULATOR_CREDENTIALS
from sluice.observe.logging import configure_logging

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


def cli_context(ctx: click.Context) -> CliContext:
    """The CliContext the root group's callback built (a subcommand's context inherits it)."""
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj


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


def chosen_sink(settings: Settings) -> SinkKind:
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
