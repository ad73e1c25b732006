"""Declarative table mappings: which JSON path feeds which column, with what type.

A mapping is data (TOML). ``TableMapping.map_event`` is the pure hot path that turns one
decoded event into one row, or raises ``MessageError`` for that message alone.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson

from sluice.config import validate_identifier
from sluice.convert import ColumnType, Converter, converter_for
from sluice.errors import ConfigError, FailureReason, MessageError
from sluice.model import MappedRow, ReceivedMessage

# Columns Sluice fills itself, after the mapped ones, in this order.
DEDUPE_KEY = "dedupe_key"
MESSAGE_ID = "message_id"
SENT_AT = "sent_at"
RAW_EVENT = "raw_event"
LOADED_AT = "loaded_at"  # set by the warehouse's clock at insert, never by the worker


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    path: tuple[str, ...]
    nullable: bool = True
    max_length: int | None = None  # TEXT only, in UTF-8 bytes


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
    _converters: tuple[Converter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.load_columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"mapping: column(s) {', '.join(duplicates)} defined twice")
        converters = tuple(converter_for(c.type, c.max_length) for c in self.columns)
        object.__setattr__(self, "_converters", converters)

    @property
    def load_columns(self) -> tuple[Column, ...]:
        """Columns the worker supplies, in the order of ``MappedRow.values``."""
        return self.columns + SYSTEM_COLUMNS

    def with_table(self, table: str) -> TableMapping:
        return TableMapping(
            validate_identifier(table, qualified=True), self.columns, self.dedupe_paths
        )

    def map_event(
        self, event: Mapping[str, object], raw_text: str, message: ReceivedMessage
    ) -> MappedRow:
        values: list[object] = []
        for column, convert in zip(self.columns, self._converters, strict=True):
            value = _lookup(event, column.path)
            if value is None or (value == "" and column.type is not ColumnType.TEXT):
                if not column.nullable:
                    raise MessageError(FailureReason.MISSING_REQUIRED, f"{column.name} is absent")
                values.append(None)
                continue
            values.append(convert(value, column.name))
        key = self.dedupe_key(event)
        sent_at = (
            datetime.fromtimestamp(message.sent_timestamp_ms / 1000, UTC).replace(tzinfo=None)
            if message.sent_timestamp_ms
            else None
        )
        values.extend((key, message.message_id, sent_at, raw_text))
        return MappedRow(message, key, tuple(values))

    def dedupe_key(self, event: Mapping[str, object]) -> str:
        if not self.dedupe_paths:
            canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
            return hashlib.sha256(canonical).hexdigest()
        parts = []
        for path in self.dedupe_paths:
            value = _lookup(event, path)
            if value is None or value == "":
                raise MessageError(
                    FailureReason.MISSING_DEDUPE_KEY, f"dedupe path {'.'.join(path)} is absent"
                )
            parts.append(orjson.dumps(value))
        return hashlib.sha256(b"\x1f".join(parts)).hexdigest()


def _lookup(event: Mapping[str, object], path: tuple[str, ...]) -> object:
    current: object = event
    for key in path:
        if not isinstance(current, Mapping):
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


def load_mapping(path: str | None, table: str) -> TableMapping:
    """The mapping in ``path``, or the AppsFlyer default, targeting ``table``."""
    if path is None:
        text = resources.files("sluice.mappings").joinpath("appsflyer.toml").read_text("utf-8")
        return parse_mapping(text, table, "the default AppsFlyer mapping")
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"SLUICE_MAPPING_FILE={path!r} cannot be read: {exc.strerror}") from exc
    return parse_mapping(text, table, f"mapping {path}")


def column_names(columns: Sequence[Column]) -> list[str]:
    return [c.name for c in columns]
