"""What Sluice knows about each warehouse, as data: one profile per ``SinkKind``.

In the manner of dlt's destination capabilities: how many writers the warehouse allows, the
longest text it stores, the flush defaults it wants, its SQL dialect, the rules its settings
must meet and how to build its sink. Code that would ask "is this DuckDB?" reads the
profile instead, so a new warehouse is one entry here, not a hunt for branches.

The builders import their drivers when called: DuckDB and Arrow alone add ~45 MB to a
worker's RSS, and a PostgreSQL worker never needs botocore.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sluice.config_sink import SinkKind
from sluice.errors import ConfigError
from sluice.mapping import TableMapping
from sluice.sinks.base import FaultHook, Sink
from sluice.sinks.redshift.settings import (
    REDSHIFT_DEFAULTS,
    REDSHIFT_MAX_AGE,
    BuildSettings,
    check_redshift,
)
from sluice.sinks.sql import DUCKDB, POSTGRES, REDSHIFT, REDSHIFT_MAX_VARCHAR, Dialect


class SinkSettings(BuildSettings, Protocol):
    """What building and checking any sink reads of the settings (``Settings`` is one)."""

    @property
    def duckdb_path(self) -> str: ...


SinkBuilder = Callable[[SinkSettings, TableMapping, FaultHook | None, dict[str, str] | None], Sink]


@dataclass(frozen=True)
class FlushDefaults:
    """Settings a warehouse wants where they were not given, by setting name."""

    values: Mapping[str, object] = field(default_factory=dict)
    max_age: float | None = None  # batch_max_age, when it has one of its own

    def for_visibility(self, visibility: int) -> dict[str, object]:
        """The defaults under a visibility timeout: a batch's age stays within a quarter of
        it, so the batch is loaded and deleted before its messages could reappear."""
        chosen = dict(self.values)
        if self.max_age is not None:
            chosen["batch_max_age"] = min(self.max_age, visibility / 4)
        return chosen


def _no_rules(settings: SinkSettings) -> None:
    return None


@dataclass(frozen=True)
class WarehouseProfile:
    """One warehouse's capabilities and wants; ``PROFILES`` holds one per kind."""

    kind: SinkKind
    dialect: Dialect
    build: SinkBuilder
    check: Callable[[SinkSettings], None] = _no_rules  # rules on its settings; ConfigError
    # Loads at once into one database; None: any number. A supervisor's workers (and a
    # replacement starting while the one it replaces exits) would break any such limit.
    max_writers: int | None = None
    text_limit: int | None = None  # bytes a text column holds, when bounded
    defaults: FlushDefaults = field(default_factory=FlushDefaults)
    # Loads a Data Locker CSV object with COPY straight from S3 where the mapping allows it
    # (docs/data-locker.md); otherwise objects stream through ``load`` like any batch.
    copies_s3_objects: bool = False

    def load_concurrency(self, wanted: int) -> int:
        """Loads in parallel in one worker: more than the writers allowed would only queue."""
        return wanted if self.max_writers is None else min(wanted, self.max_writers)


def _build_postgres(
    settings: SinkSettings,
    mapping: TableMapping,
    faults: FaultHook | None,
    credentials: dict[str, str] | None,
) -> Sink:
    from sluice.sinks.postgres import PostgresSink

    assert settings.database_url is not None  # checked by _check_postgres
    return PostgresSink(
        settings.database_url,
        mapping,
        connections=settings.effective_load_concurrency,
        application_name=f"sluice-{settings.worker_id}"[:63],
        faults=faults,
    )


def _build_duckdb(
    settings: SinkSettings,
    mapping: TableMapping,
    faults: FaultHook | None,
    credentials: dict[str, str] | None,
) -> Sink:
    from sluice.sinks.duckdb import DuckDBSink

    return DuckDBSink(settings.duckdb_path, mapping, faults=faults)


def _build_redshift(
    settings: SinkSettings,
    mapping: TableMapping,
    faults: FaultHook | None,
    credentials: dict[str, str] | None,
) -> Sink:
    from sluice.sinks.redshift.build import build_redshift_sink

    return build_redshift_sink(settings, mapping, faults, credentials)


def _check_postgres(settings: SinkSettings) -> None:
    if not settings.database_url:
        raise ConfigError("SLUICE_DATABASE_URL is required when SLUICE_SINK=postgres")


def _check_redshift(settings: SinkSettings) -> None:
    check_redshift(settings.redshift, settings.database_url)


PROFILES: dict[SinkKind, WarehouseProfile] = {
    SinkKind.DUCKDB: WarehouseProfile(
        SinkKind.DUCKDB,
        DUCKDB,
        _build_duckdb,
        max_writers=1,  # one writer per file: a lock, not a pool
    ),
    SinkKind.POSTGRES: WarehouseProfile(
        SinkKind.POSTGRES, POSTGRES, _build_postgres, check=_check_postgres
    ),
    SinkKind.REDSHIFT: WarehouseProfile(
        SinkKind.REDSHIFT,
        REDSHIFT,
        _build_redshift,
        check=_check_redshift,
        text_limit=REDSHIFT_MAX_VARCHAR,
        defaults=FlushDefaults(REDSHIFT_DEFAULTS, max_age=REDSHIFT_MAX_AGE),
        copies_s3_objects=True,
    ),
}
