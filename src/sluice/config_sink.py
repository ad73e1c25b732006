"""Which warehouse a worker loads into when ``SLUICE_SINK`` is not given.

An embedded DuckDB file is never chosen by default: in a container it vanishes with the
task, after the messages loaded into it were deleted from SQS. So the sink is inferred from
the settings that can only mean one warehouse (Redshift's cluster or workgroup, else a
database URL), and where they mean none or two, ``run`` and ``init-db`` refuse to start with
one line listing the choices. DuckDB is for ``sluice demo`` and for who asks for it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sluice.errors import ConfigError
from sluice.sinks.redshift.settings import RedshiftConnection, RedshiftSettings


class SinkKind(enum.Enum):
    DUCKDB = "duckdb"
    POSTGRES = "postgres"
    REDSHIFT = "redshift"


CHOICES = (
    "SLUICE_SINK=redshift (with REDSHIFT_CLUSTER_IDENTIFIER and REDSHIFT_DB_USER, or "
    "SLUICE_REDSHIFT_WORKGROUP, and REDSHIFT_DATABASE), SLUICE_SINK=postgres (with "
    "SLUICE_DATABASE_URL) or SLUICE_SINK=duckdb (a local file, SLUICE_DUCKDB_PATH: for trying "
    "Sluice out, lost with its container)"
)


@dataclass(frozen=True)
class SinkInference:
    """The sink, or None, and why: the variables it was inferred from, or the one line
    that refuses to start without a choice."""

    sink: SinkKind | None
    because: str


def infer_sink(
    *,
    cluster_identifier: str | None,
    workgroup: str | None,
    direct_redshift: bool,
    database_url: str | None,
) -> SinkInference:
    """``direct_redshift``: SLUICE_REDSHIFT_CONNECTION=direct was given, which makes the
    database URL Redshift's own rather than a second, PostgreSQL, choice."""
    redshift = [
        name
        for name, value in (
            ("REDSHIFT_CLUSTER_IDENTIFIER", cluster_identifier),
            ("SLUICE_REDSHIFT_WORKGROUP", workgroup),
        )
        if value
    ]
    if direct_redshift:
        redshift.append("SLUICE_REDSHIFT_CONNECTION=direct")
    if redshift and database_url and not direct_redshift:
        return SinkInference(
            None,
            f"SLUICE_SINK is not set and both {' and '.join(redshift)} and SLUICE_DATABASE_URL "
            "are: set SLUICE_SINK=redshift or SLUICE_SINK=postgres",
        )
    if redshift:
        return SinkInference(SinkKind.REDSHIFT, ", ".join(redshift))
    if database_url:
        return SinkInference(SinkKind.POSTGRES, "SLUICE_DATABASE_URL")
    return SinkInference(None, f"no warehouse chosen: set {CHOICES}")


def infer_from(values: Mapping[str, Any]) -> SinkInference:
    """``infer_sink`` over settings' values by field name (parsed, or a Settings' own)."""
    return infer_sink(
        cluster_identifier=values.get("redshift_cluster_identifier"),
        workgroup=values.get("redshift_workgroup"),
        direct_redshift=values.get("redshift_connection") is RedshiftConnection.DIRECT,
        database_url=values.get("database_url"),
    )


class SinkChoice(Protocol):
    """What the choice of a sink reads of the settings (``Settings`` is one)."""

    @property
    def sink(self) -> SinkKind | None: ...
    @property
    def database_url(self) -> str | None: ...
    @property
    def redshift(self) -> RedshiftSettings: ...


def require_sink(settings: SinkChoice) -> SinkKind:
    """The sink to load into; without one (none given, and none or two inferable), the one
    line listing the choices. Only what loads needs it: `config show` works without."""
    if settings.sink is None:
        redshift = settings.redshift
        raise ConfigError(
            infer_sink(
                cluster_identifier=redshift.cluster_identifier,
                workgroup=redshift.workgroup,
                direct_redshift=redshift.connection is RedshiftConnection.DIRECT,
                database_url=settings.database_url,
            ).because
        )
    return settings.sink
