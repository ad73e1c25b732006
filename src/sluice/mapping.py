"""Declarative table mappings: which JSON path feeds which column, with what type.

A mapping is data (TOML). ``TableMapping.map_event`` is the pure hot path that turns one
decoded event into one row, or raises ``MessageError`` for that message alone.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from sluice.canonical import event_key, exact_tree, value_bytes
from sluice.config_parse import validate_identifier
from sluice.convert import ColumnType, Converter, converter_for
from sluice.errors import ConfigError, FailureReason, MessageError
from sluice.model import MappedRow, ReceivedMessage

# Columns Sluice fills itself, after the mapped ones, in this order.
DEDUPE_KEY = "dedupe_key"
MESSAGE_ID = "message_id"
SENT_AT = "sent_at"
RAW_EVENT = "raw_event"
LOADED_AT = "loaded_at"  # set by the warehouse's clock at insert, never by the worker
_EPOCH = datetime(1970, 1, 1)  # naive UTC, like every timestamp Sluice stores


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    path: tuple[str, ...]
    nullable: bool = True
    max_length: int | None = None  # TEXT only, in UTF-8 bytes


@dataclass(frozen=True, slots=True)
class _Step:
    """One mapped column, precompiled for the hot path."""

    name: str
    key: str | None  # the key when the path has one part: a plain dict lookup
    path: tuple[str, ...]
    convert: Converter
    nullable: bool
    empty_is_null: bool  # "" means absent for every type but text


SYSTEM_COLUMNS: tuple[Column, ...] = (
    Column(DEDUPE_KEY, ColumnType.TEXT, (), nullable=False, max_length=64),
    Column(MESSAGE_ID, ColumnType.TEXT, (), nullable=False, max_length=128),
    Column(SENT_AT, ColumnType.TIMESTAMP, ()),
    Column(RAW_EVENT, ColumnType.JSON, (), nullable=False),
)


@dataclass(frozen=True)
class TableMapping:
    """Target table, its mapped columns, and how the dedupe key is made."""

    table: str
    columns: tuple[Column, ...]
    dedupe_paths: tuple[tuple[str, ...], ...] = ()
    _plan: tuple[_Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.load_columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(
                f"mapping for {self.table}: column(s) {', '.join(duplicates)} defined twice"
            )
        plan = tuple(
            _Step(
                c.name,
                c.path[0] if len(c.path) == 1 else None,
                c.path,
                converter_for(c.type, c.max_length),
                c.nullable,
                c.type is not ColumnType.TEXT,
            )
            for c in self.columns
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def load_columns(self) -> tuple[Column, ...]:
        """Columns the worker supplies, in the order of ``MappedRow.values``."""
        return self.columns + SYSTEM_COLUMNS

    def with_text_limit(self, max_bytes: int) -> TableMapping:
        """Bound every unbounded text column (Redshift's VARCHAR holds 65,535 bytes), so an
        oversized value fails its own message before the load, not the batch's COPY."""
        columns = tuple(
            replace(c, max_length=max_bytes)
            if c.type is ColumnType.TEXT and c.max_length is None
            else c
            for c in self.columns
        )
        return TableMapping(self.table, columns, self.dedupe_paths)

    def with_table(self, table: str) -> TableMapping:
        try:
            validate_identifier(table, qualified=True)
        except ValueError as exc:
            raise ConfigError(f"table name {table!r} {exc}") from None
        return TableMapping(table, self.columns, self.dedupe_paths)

    def map_event(
        self, event: Mapping[str, object], raw_text: str, message: ReceivedMessage
    ) -> MappedRow:
        # The hot path: one call per message, so plain dict lookups, no ABC checks.
        values: list[object] = []
        append = values.append
        for step in self._plan:
            value = event.get(step.key) if step.key is not None else _lookup(event, step.path)
            if value is None or (step.empty_is_null and value == ""):
                if not step.nullable:
                    raise MessageError(FailureReason.MISSING_REQUIRED, f"{step.name} is absent")
                append(None)
                continue
            append(step.convert(value, step.name))
        key = self.dedupe_key(event, raw_text)
        sent_at = (
            _EPOCH + timedelta(milliseconds=message.sent_timestamp_ms)
            if message.sent_timestamp_ms
            else None
        )
        values.extend((key, message.message_id, sent_at, raw_text))
        return MappedRow(message, key, tuple(values))

    def dedupe_key(self, event: Mapping[str, object], raw_text: str) -> str:
        """The event's key: its canonical form's SHA-256, or its dedupe paths' values'.

        ``raw_text`` is the JSON the event was parsed from: numbers a double cannot hold
        exactly, which orjson rounds in ``event``, are read from it exactly.
        """
        if not self.dedupe_paths:
            return event_key(event, raw_text)
        exact: object = None
        parts = []
        for path in self.dedupe_paths:
            value = _lookup(event, path)
            if value is None or value == "":
                raise MessageError(
                    FailureReason.MISSING_DEDUPE_KEY, f"dedupe path {'.'.join(path)} is absent"
                )
            if isinstance(value, float | dict | list):
                # A float may be a rounded reading of its text; a container's form must not
                # depend on the order its keys were sent in. Both come from the exact reading.
                exact = exact_tree(raw_text) if exact is None else exact
                value = _lookup(exact, path)
            parts.append(value_bytes(value))
        return hashlib.sha256(b"\x1f".join(parts)).hexdigest()


def _lookup(event: object, path: tuple[str, ...]) -> object:
    current: object = event
    for key in path:
        if not isinstance(current, dict):  # decoded JSON objects are always dicts
            return None
        current = current.get(key)
    return current


def _column_from_toml(entry: Mapping[str, object], where: str) -> Column:
    name = entry.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: every column needs a name")
    try:
        validate_identifier(name)
    except ValueError as exc:
        raise ConfigError(f"{where}: column name {name!r} {exc}") from None
    try:
        kind = ColumnType(str(entry.get("type", "text")))
    except ValueError:
        allowed = ", ".join(t.value for t in ColumnType)
        raise ConfigError(f"{where}: column {name}: type must be one of {allowed}") from None
    raw_path = entry.get("path", name)
    path = tuple(raw_path.split(".")) if isinstance(raw_path, str) else tuple(map(str, raw_path))  # type: ignore[call-overload]
    max_length = entry.get("max_length")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ConfigError(f"{where}: column {name}: max_length must be a positive integer")
    if max_length is not None and kind is not ColumnType.TEXT:
        raise ConfigError(f"{where}: column {name}: max_length applies to text columns only")
    return Column(name, kind, path, bool(entry.get("nullable", True)), max_length)


def parse_mapping(text: str, table: str, where: str) -> TableMapping:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc
    entries = data.get("columns")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: needs at least one [[columns]] entry")
    columns = tuple(_column_from_toml(e, where) for e in entries)
    reserved = {c.name for c in SYSTEM_COLUMNS} | {LOADED_AT}
    clash = sorted(reserved & {c.name for c in columns})
    if clash:
        raise ConfigError(f"{where}: column(s) {', '.join(clash)} are reserved for Sluice")
    dedupe = data.get("dedupe_key", [])
    if isinstance(dedupe, str):
        dedupe = [dedupe]
    paths = tuple(tuple(str(p).split(".")) for p in dedupe)
    return TableMapping(table, columns, paths).with_table(table)


# Mappings shipped with Sluice, selected by name (SLUICE_MAPPING_FILE=appsflyer_data_locker).
SHIPPED_MAPPINGS = {
    "appsflyer": "the AppsFlyer push-API mapping (the default)",
    "appsflyer_data_locker": "AppsFlyer Data Locker files (the raw-data export's CSV headers)",
}


def shipped_mapping_text(name: str) -> str:
    return resources.files("sluice.mappings").joinpath(f"{name}.toml").read_text("utf-8")


def load_mapping(path: str | None, table: str) -> TableMapping:
    """The mapping in ``path`` (a file, or a shipped mapping's name), or the AppsFlyer
    default, targeting ``table``."""
    if path is None:
        return parse_mapping(
            shipped_mapping_text("appsflyer"), table, "the default AppsFlyer mapping"
        )
    if path in SHIPPED_MAPPINGS and not Path(path).exists():
        return parse_mapping(shipped_mapping_text(path), table, f"the shipped mapping {path}")
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"SLUICE_MAPPING_FILE={path!r} cannot be read: {exc.strerror}") from exc
    return parse_mapping(text, table, f"mapping {path}")
