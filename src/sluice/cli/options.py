"""The settings options every command accepts, before or after its name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import click

from sluice.config_text import flag_specs

# Crash points for the fault tests: still set by SLUICE_FAULT_* or these flags, never offered
# to an operator in --help.
TEST_ONLY_SETTINGS = frozenset({"fault_point", "fault_after"})
SETTINGS_EPILOG = (
    "Every settings option of `sluice --help` (--config, --sink, --queue-url, ...) is also "
    "accepted after the command: `sluice run --sink postgres` is `sluice --sink postgres run`. "
    "Given in both places, the one after the command wins."
)
GROUP_EPILOG = (
    "The settings options above may come before or after the command: `sluice --sink "
    "postgres run` or `sluice run --sink postgres`. Given in both places, the one after the "
    "command wins."
)


class SettingsHolder(Protocol):
    """What the group's callback puts in ``ctx.obj`` (``common.CliContext``)."""

    config_file: str | None
    flags: dict[str, object]


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, flag, text in reversed(flag_specs()):
        hidden = name in TEST_ONLY_SETTINGS
        command = click.option(flag, name, default=None, help=text, hidden=hidden)(command)
    return command


def _store_setting(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Record a setting given after the command over what the group got before it: the
    group's callback has already built the CliContext when the command's options are parsed."""

    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            holder: SettingsHolder = ctx.obj  # a child context shares its parent's obj
            if name == "config_file":
                holder.config_file = value
            else:
                holder.flags[name] = value
        return value

    return store


def takes_settings(command: click.Command) -> click.Command:
    """Accept the group's settings options after ``command`` too (hidden from its --help,
    which points to ``sluice --help`` for them). The command's own options keep their flags."""
    taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    specs = (("config_file", "--config", "TOML file of settings"), *flag_specs())
    for name, flag, text in specs:
        if flag in taken:
            continue
        command.params.append(
            click.Option(
                [flag, f"setting_{name}"],
                default=None,
                help=text,
                hidden=True,
                expose_value=False,
                callback=_store_setting(name),
            )
        )
    command.epilog = f"{command.epilog}\n\n{SETTINGS_EPILOG}" if command.epilog else SETTINGS_EPILOG
    return command
