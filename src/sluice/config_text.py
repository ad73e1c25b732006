"""The settings as text: the environment that reproduces them (for child processes), the
rows of ``sluice config show`` (secrets masked), and one CLI option per setting."""

from __future__ import annotations

from sluice.config import SPECS, Settings
from sluice.config_parse import setting_text
from sluice.dsn import mask_dsn


def mask_secret_url(value: str) -> str:
    """Hide every password of a DSN (URL user info or query, or libpq key=value)."""
    return mask_dsn(value)


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every setting that has a value, as the environment variable that sets it."""
    env = {}
    for spec in SPECS:
        value = spec.value_of(settings)
        if spec.name == "receive_concurrency" and not settings.receive_concurrency_given:
            continue  # adaptive stays adaptive
        if value is not None:
            env[spec.env] = setting_text(value)
    return env


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, source variable, value) rows for ``sluice config show``, secrets masked."""
    rows = []
    for spec in SPECS:
        value = spec.value_of(settings)
        if value is None and spec.name != "delete_concurrency":
            text = ""
        elif spec.secret:
            text = mask_secret_url(str(value))
        elif spec.name == "receive_concurrency" and not settings.receive_concurrency_given:
            text = f"adaptive from {value}"
        elif spec.name == "delete_concurrency" and value is None:
            text = "adaptive"
        elif spec.name == "sink" and settings.sink_inferred_from:
            text = f"{setting_text(value)} (inferred from {settings.sink_inferred_from})"
        else:
            text = setting_text(value)
        rows.append((spec.name, spec.env, text))
    return rows


def flag_specs() -> tuple[tuple[str, str, str], ...]:
    """(name, flag, help) for the CLI to generate one option per setting."""
    return tuple((s.name, s.flag, f"{s.help} [env {s.env}]") for s in SPECS)
