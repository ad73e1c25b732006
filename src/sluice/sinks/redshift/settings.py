"""Settings of the Redshift sink: one frozen object (``Settings.redshift``), its enums, its
flush defaults, and the rules that tie them.

The environment variables, flags and TOML names keep their flat spelling
(``REDSHIFT_DATABASE``, ``--redshift-database``, ``redshift_database``); each spec names the
field it fills here (``redshift.database``). This module imports nothing of ``config``:
``config`` assembles ``RedshiftSettings`` and asks the warehouse profile for its rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Protocol

from sluice.config_parse import (
    Spec,
    aws_arn,
    column_identifier,
    enum_of,
    float_range,
    http_url,
    nonempty_text,
    parse_bool,
    s3_uri,
)
from sluice.errors import ConfigError


class RedshiftConnection(enum.Enum):
    """How the Redshift sink reaches the cluster."""

    DATA_API = "data_api"  # HTTPS, IAM-authorised, no network path to the cluster needed
    DIRECT = "direct"  # the PostgreSQL-compatible endpoint, TLS verified (SLUICE_DATABASE_URL)


class RedshiftMergeLock(enum.Enum):
    """Whether a load LOCKs its target (docs/redshift.md, "Concurrent loads and readers")."""

    AUTO = "auto"  # none where the database is SERIALIZABLE, else transaction
    NONE = "none"  # no LOCK: readers never wait; a racing merge gets 1023 and is retried
    TRANSACTION = "transaction"  # LOCK first: correct under SNAPSHOT too, readers wait


class RedshiftLoadPath(enum.Enum):
    AUTO = "auto"  # copy when SLUICE_S3_STAGING_URI is set, else insert
    COPY = "copy"
    INSERT = "insert"


@dataclass(frozen=True)
class RedshiftSettings:
    """What the Redshift sink needs beyond the shared settings. See ``docs/configuration.md``."""

    cluster_identifier: str | None = None
    database: str | None = None
    db_user: str | None = None
    connection: RedshiftConnection = RedshiftConnection.DATA_API
    workgroup: str | None = None
    secret_arn: str | None = None
    iam_auth: bool = False
    load_path: RedshiftLoadPath = RedshiftLoadPath.AUTO
    merge_lock: RedshiftMergeLock = RedshiftMergeLock.AUTO
    iam_role: str | None = None
    sort_key: str | None = None
    statement_timeout: float = 300.0
    s3_staging_uri: str | None = None
    s3_endpoint_url: str | None = None
    data_endpoint_url: str | None = None
    endpoint_url: str | None = None

    @property
    def copy(self) -> bool:
        """Whether the sink stages batches in S3 (else multi-row INSERTs)."""
        if self.load_path is RedshiftLoadPath.AUTO:
            return self.s3_staging_uri is not None
        return self.load_path is RedshiftLoadPath.COPY


# Redshift wants few, large loads: every commit is serialised cluster-wide and costs
# ~100 ms or more whatever its size. Used where the setting was not given explicitly.
REDSHIFT_DEFAULTS: dict[str, object] = {
    "batch_max_rows": 20_000,
    "batch_max_bytes": 32 * 1024 * 1024,
    "load_concurrency": 3,
    # a batch filling while three load: receivers must not stall before batches are full
    "max_held_messages": 80_000,
}
REDSHIFT_MAX_AGE = 30.0  # batch_max_age, inside the visibility budget (see FlushDefaults)


def check_redshift(r: RedshiftSettings, database_url: str | None) -> None:
    """The rules when ``SLUICE_SINK=redshift``; ``database_url`` is the direct connection's."""
    if r.connection is RedshiftConnection.DIRECT:
        if not database_url:
            raise ConfigError(
                "SLUICE_DATABASE_URL is required when SLUICE_REDSHIFT_CONNECTION=direct"
            )
        _check_tls(database_url)
        if r.iam_auth and not (r.cluster_identifier and r.db_user):
            raise ConfigError(
                "SLUICE_REDSHIFT_IAM_AUTH needs REDSHIFT_CLUSTER_IDENTIFIER and REDSHIFT_DB_USER"
            )
    else:
        if not r.database:
            raise ConfigError("REDSHIFT_DATABASE is required when SLUICE_SINK=redshift")
        provisioned = r.cluster_identifier and (r.db_user or r.secret_arn)
        if not (r.workgroup or r.secret_arn or provisioned):
            raise ConfigError(
                "the Redshift Data API needs REDSHIFT_CLUSTER_IDENTIFIER with REDSHIFT_DB_USER "
                "or SLUICE_REDSHIFT_SECRET_ARN (provisioned), or SLUICE_REDSHIFT_WORKGROUP "
                "(Serverless)"
            )
    if r.load_path is RedshiftLoadPath.COPY and not r.s3_staging_uri:
        raise ConfigError("SLUICE_REDSHIFT_LOAD_PATH=copy needs SLUICE_S3_STAGING_URI")
    if r.copy and not r.iam_role:
        raise ConfigError(
            "SLUICE_REDSHIFT_IAM_ROLE is required with SLUICE_S3_STAGING_URI: the role "
            "Redshift assumes to read the staged files"
        )


_SAFE_SSLMODES = {"verify-full", "verify-ca"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _check_tls(url: str) -> None:
    """A direct connection verifies the server's certificate, except to a loopback host
    (tests, or a local tunnel whose far end is verified by other means)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError; ConfigError must not show the URL
        raise ConfigError("SLUICE_DATABASE_URL=*** is invalid: cannot be parsed") from None
    mode = str(params.get("sslmode", "verify-full"))
    host = str(params.get("host", ""))
    if mode not in _SAFE_SSLMODES and host not in _LOOPBACK:
        raise ConfigError(
            f"SLUICE_DATABASE_URL sslmode={mode} is invalid for Redshift: use verify-full "
            "(the default when sslmode is not given) or verify-ca"
        )


def _nested(*specs: Spec) -> tuple[Spec, ...]:
    """The specs with their field in ``RedshiftSettings``: the name less ``redshift_``."""
    return tuple(
        replace(spec, field="redshift." + spec.name.removeprefix("redshift_")) for spec in specs
    )


# Where the reference lists them: beside the table name, as the deployment it replaces did.
REDSHIFT_TARGET_SPECS = _nested(
    Spec("redshift_cluster_identifier", "REDSHIFT_CLUSTER_IDENTIFIER", nonempty_text, "Redshift"),
    Spec("redshift_database", "REDSHIFT_DATABASE", nonempty_text, "Redshift database"),
    Spec("redshift_db_user", "REDSHIFT_DB_USER", nonempty_text, "Redshift database user"),
)
REDSHIFT_SPECS = _nested(
    Spec(
        "redshift_connection",
        "SLUICE_REDSHIFT_CONNECTION",
        enum_of(RedshiftConnection),
        "data_api or direct",
    ),
    Spec("redshift_workgroup", "SLUICE_REDSHIFT_WORKGROUP", nonempty_text, "Redshift Serverless"),
    Spec("redshift_secret_arn", "SLUICE_REDSHIFT_SECRET_ARN", aws_arn, "Data API secret"),
    Spec(
        "redshift_iam_auth", "SLUICE_REDSHIFT_IAM_AUTH", parse_bool, "direct: GetClusterCredentials"
    ),
    Spec(
        "redshift_load_path",
        "SLUICE_REDSHIFT_LOAD_PATH",
        enum_of(RedshiftLoadPath),
        "auto, copy or insert",
    ),
    Spec(
        "redshift_merge_lock",
        "SLUICE_REDSHIFT_MERGE_LOCK",
        enum_of(RedshiftMergeLock),
        "auto, none or transaction",
    ),
    Spec("redshift_iam_role", "SLUICE_REDSHIFT_IAM_ROLE", aws_arn, "role COPY reads S3 with"),
    Spec(
        "redshift_sort_key",
        "SLUICE_REDSHIFT_SORT_KEY",
        column_identifier,
        "init-db sort key column",
    ),
    Spec(
        "redshift_statement_timeout",
        "SLUICE_REDSHIFT_STATEMENT_TIMEOUT",
        float_range(1, 86_400),
        "Data API statement deadline (s)",
    ),
    Spec("s3_staging_uri", "SLUICE_S3_STAGING_URI", s3_uri, "s3://bucket/prefix for COPY"),
    Spec("s3_endpoint_url", "AWS_ENDPOINT_URL_S3", http_url, "S3 endpoint (an emulator)"),
    Spec(
        "redshift_data_endpoint_url",
        "AWS_ENDPOINT_URL_REDSHIFT_DATA",
        http_url,
        "Redshift Data API endpoint (an emulator)",
    ),
    Spec(
        "redshift_endpoint_url",
        "AWS_ENDPOINT_URL_REDSHIFT",
        http_url,
        "Redshift API endpoint (GetClusterCredentials)",
    ),
)


class BuildSettings(Protocol):
    """What building the sink reads of the settings (``Settings`` is one)."""

    @property
    def worker_id(self) -> str: ...
    @property
    def aws_region(self) -> str: ...
    @property
    def database_url(self) -> str | None: ...
    @property
    def effective_load_concurrency(self) -> int: ...
    @property
    def redshift(self) -> RedshiftSettings: ...
