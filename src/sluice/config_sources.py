"""Where each setting's value came from, for ``sluice config show``.

The same precedence as ``load_settings`` (TOML file, then environment, then flags), read from
the same inputs; what none of them gave is the field's default, or "derived" when the value
was computed at start-up (the worker id from the host, the held-bytes bound from memory, the
Redshift flush defaults) and so differs from the plain default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.config import SPECS, Settings
from sluice.config_parse import read_toml
from sluice.config_text import mask_secret_url, settings_environment

# Always computed when not given, even when the result happens to equal the field's default.
ALWAYS_DERIVED = frozenset({"worker_id", "max_held_bytes"})


@dataclass(frozen=True)
class Source:
    kind: str  # file, environment, flag, default or derived
    where: str | None = None  # the file's path, the variable or the flag

    def text(self) -> str:
        return f"{self.kind} {self.where}" if self.where else self.kind


@dataclass(frozen=True)
class SettingRow:
    name: str
    variable: str
    value: str | None  # as the variable would spell it; secrets masked
    source: Source

    def document(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "variable": self.variable,
            "source": self.source.kind,
            "from": self.source.where,
        }


def setting_sources(
    env: Mapping[str, str],
    flags: Mapping[str, object],
    config_file: str | None,
    settings: Settings,
) -> list[SettingRow]:
    """One row per setting, in the reference's order, saying where its value came from."""
    given: dict[str, Source] = {}
    path = config_file or env.get("SLUICE_CONFIG")
    if path:
        for name in read_toml(path, {spec.name for spec in SPECS}):
            given[name] = Source("file", path)
    for spec in SPECS:
        if spec.env in env and env[spec.env].strip() != "":
            given[spec.name] = Source("environment", spec.env)
    for name, value in flags.items():
        if value is not None:
            given[name] = Source("flag", "--" + name.replace("_", "-"))
    # The masking and the spelling are settings_environment's and mask_secret_url's own.
    spelled = settings_environment(settings)
    defaults = Settings()
    rows = []
    for spec in SPECS:
        value = spec.value_of(settings)
        source = given.get(spec.name)
        if source is None:
            source = _not_given(spec.name, value, spec.value_of(defaults), settings)
        text = spelled.get(spec.env)
        text = _adaptive(spec.name, value) if text is None else text
        if text is not None and spec.secret:
            text = mask_secret_url(text)
        rows.append(SettingRow(spec.name, spec.env, text, source))
    return rows


def _adaptive(name: str, value: object) -> str | None:
    """How an unset receive or delete count reads: it adapts (from ``value``, if any)."""
    if name not in ("receive_concurrency", "delete_concurrency"):
        return None
    return "adaptive" if value is None else f"adaptive from {value}"


def _not_given(name: str, value: object, default: object, settings: Settings) -> Source:
    """Where a value none of the inputs gave came from: inferred, derived or the default."""
    if name == "sink" and settings.sink_inferred_from:
        return Source("derived", f"inferred from {settings.sink_inferred_from}")
    derived = name in ALWAYS_DERIVED or value != default
    return Source("derived" if derived else "default")
