"""Settings: one frozen object, built once at the entry point and passed down.

Sources, in rising priority: an optional TOML file (``--config`` or ``SLUICE_CONFIG``),
environment variables, then CLI flags. The variables of the deployment Sluice replaces
(``SQS_QUEUE_URL``, ``SQS_MAX_MESSAGES``, ...) keep their meaning; everything new is
``SLUICE_*``. A bad value stops start-up with one line naming the setting and what is
allowed.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluice.config_redshift import (
    RedshiftConnection,
    RedshiftLoadPath,
    check_redshift,
    redshift_defaults,
)
from sluice.errors import ConfigError


class SinkKind(enum.Enum):
    DUCKDB = "duckdb"
    POSTGRES = "postgres"
    REDSHIFT = "redshift"


class SqsClientKind(enum.Enum):
    """Which SQS client: the lean JSON-protocol one (fast) or aiobotocore's (reference)."""

    WIRE = "wire"
    BOTOCORE = "botocore"


class LogFormat(enum.Enum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class FaultPoint(enum.Enum):
    """Test-only crash points: the worker SIGKILLs itself when it reaches one."""

    AFTER_RECEIVE = "after_receive"
    MID_STAGING = "mid_staging"
    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"
    MID_DELETE = "mid_delete"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know, validated. See ``docs/configuration.md``."""

    queue_url: str | None = None
    max_messages: int = 10
    wait_time_seconds: int = 20
    aws_region: str = "us-east-1"
    sqs_endpoint_url: str | None = None
    worker_id: str = ""
    enable_consumer: bool = True
    port: int = 3000
    table_name: str = "appsflyer_events"
    redshift_cluster_identifier: str | None = None
    redshift_database: str | None = None
    redshift_db_user: str | None = None
    sink: SinkKind = SinkKind.DUCKDB
    database_url: str | None = None
    duckdb_path: str = "sluice.duckdb"
    dlq_url: str | None = None
    sqs_client: SqsClientKind = SqsClientKind.WIRE
    mapping_file: str | None = None
    receive_concurrency: int = 8
    max_held_messages: int = 10_000
    batch_max_rows: int = 5_000
    batch_max_bytes: int = 16 * 1024 * 1024
    batch_max_age: float = 2.0
    load_concurrency: int = 2
    visibility_timeout: int = 120
    shutdown_grace: float = 25.0
    stats_interval: float = 60.0
    queue_attributes_interval: float = 30.0
    retry_max_backoff: float = 30.0
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "info"
    fault_point: FaultPoint | None = None
    fault_after: int = 1
    redshift_connection: RedshiftConnection = RedshiftConnection.DATA_API
    redshift_workgroup: str | None = None
    redshift_secret_arn: str | None = None
    redshift_iam_auth: bool = False
    redshift_load_path: RedshiftLoadPath = RedshiftLoadPath.AUTO
    redshift_iam_role: str | None = None
    redshift_sort_key: str | None = None
    redshift_statement_timeout: float = 300.0
    s3_staging_uri: str | None = None
    s3_endpoint_url: str | None = None
    redshift_data_endpoint_url: str | None = None
    redshift_endpoint_url: str | None = None

    @property
    def heartbeat_interval(self) -> float:
        """How often held messages are checked for visibility extension."""
        return max(0.5, self.visibility_timeout / 6)

    @property
    def redshift_copy(self) -> bool:
        """Whether the Redshift sink stages batches in S3 (else multi-row INSERTs)."""
        if self.redshift_load_path is RedshiftLoadPath.AUTO:
            return self.s3_staging_uri is not None
        return self.redshift_load_path is RedshiftLoadPath.COPY

    @property
    def effective_load_concurrency(self) -> int:
        # DuckDB allows one writer per file; parallel loads would only queue on its lock.
        return 1 if self.sink is SinkKind.DUCKDB else self.load_concurrency


@dataclass(frozen=True)
class _Spec:
    name: str
    env: str
    parse: Callable[[str], object]
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(value: str, *, qualified: bool = False) -> str:
    """Accept ``name`` (or ``schema.name`` when qualified) made of safe identifier parts."""
    parts = value.split(".") if qualified else [value]
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        shape = "[schema.]name" if qualified else "name"
        raise ValueError(
            f"must be an identifier {shape} of letters, digits and underscores "
            "(starting with a letter or underscore, at most 63 characters each)"
        )
    return value


def _int(lo: int, hi: int) -> Callable[[str], object]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str], object]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false (also 1/0, yes/no, on/off)")


def _enum(kind: type[enum.Enum]) -> Callable[[str], object]:
    allowed = ", ".join(str(m.value) for m in kind)

    def parse(raw: str) -> enum.Enum:
        try:
            return kind(raw.strip().lower())
        except ValueError:
            raise ValueError(f"must be one of: {allowed}") from None

    return parse


def _choice(*allowed: str) -> Callable[[str], object]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value

    return parse


def _url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return raw.strip()


def _pg_url(raw: str) -> str:
    value = raw.strip()
    if not (value.startswith(("postgresql://", "postgres://")) or "=" in value):
        raise ValueError("must be a postgresql:// URL or a libpq key=value string")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _table(raw: str) -> str:
    return validate_identifier(raw.strip(), qualified=True)


def _column(raw: str) -> str:
    return validate_identifier(raw.strip())


def _s3_uri(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an s3://bucket/prefix URI")
    return raw.strip().rstrip("/")


_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:[A-Za-z0-9_+=,.@:/-]+")


def _arn(raw: str) -> str:
    value = raw.strip()
    if not _ARN.fullmatch(value):
        raise ValueError("must be an ARN (arn:aws:service:region:account:resource)")
    return value


SPECS: tuple[_Spec, ...] = (
    _Spec("queue_url", "SQS_QUEUE_URL", _url, "URL of the source SQS queue"),
    _Spec("max_messages", "SQS_MAX_MESSAGES", _int(1, 10), "messages asked for per receive"),
    _Spec("wait_time_seconds", "SQS_WAIT_TIME_SECONDS", _int(0, 20), "long-poll wait"),
    _Spec("aws_region", "AWS_REGION", _text, "AWS region"),
    _Spec("sqs_endpoint_url", "AWS_ENDPOINT_URL_SQS", _url, "SQS endpoint (an emulator)"),
    _Spec("worker_id", "WORKER_ID", _text, "name of this worker in logs and metrics"),
    _Spec("enable_consumer", "ENABLE_SQS_CONSUMER", _bool, "false: run without consuming"),
    _Spec("port", "PORT", _int(0, 65535), "HTTP port for /metrics, /healthz, /readyz (0: off)"),
    _Spec("table_name", "REDSHIFT_TABLE_NAME", _table, "target table, whatever the sink"),
    _Spec("redshift_cluster_identifier", "REDSHIFT_CLUSTER_IDENTIFIER", _text, "Redshift"),
    _Spec("redshift_database", "REDSHIFT_DATABASE", _text, "Redshift database"),
    _Spec("redshift_db_user", "REDSHIFT_DB_USER", _text, "Redshift database user"),
    _Spec("sink", "SLUICE_SINK", _enum(SinkKind), "warehouse: duckdb, postgres or redshift"),
    _Spec("database_url", "SLUICE_DATABASE_URL", _pg_url, "PostgreSQL DSN", secret=True),
    _Spec("duckdb_path", "SLUICE_DUCKDB_PATH", _text, "DuckDB database file"),
    _Spec("dlq_url", "SLUICE_DLQ_URL", _url, "dead-letter queue URL for permanent failures"),
    _Spec("sqs_client", "SLUICE_SQS_CLIENT", _enum(SqsClientKind), "wire (fast) or botocore"),
    _Spec("mapping_file", "SLUICE_MAPPING_FILE", _text, "TOML table mapping"),
    _Spec("receive_concurrency", "SLUICE_RECEIVE_CONCURRENCY", _int(1, 256), "long polls"),
    _Spec("max_held_messages", "SLUICE_MAX_HELD_MESSAGES", _int(10, 1_000_000), "backpressure"),
    _Spec("batch_max_rows", "SLUICE_BATCH_MAX_ROWS", _int(1, 1_000_000), "flush at rows"),
    _Spec("batch_max_bytes", "SLUICE_BATCH_MAX_BYTES", _int(1024, 1 << 30), "flush at bytes"),
    _Spec("batch_max_age", "SLUICE_BATCH_MAX_AGE", _float(0.01, 900), "flush at age (s)"),
    _Spec("load_concurrency", "SLUICE_LOAD_CONCURRENCY", _int(1, 16), "loads in parallel"),
    _Spec("visibility_timeout", "SLUICE_VISIBILITY_TIMEOUT", _int(2, 43_200), "visibility (s)"),
    _Spec("shutdown_grace", "SLUICE_SHUTDOWN_GRACE", _float(0.5, 3600), "stop deadline (s)"),
    _Spec("stats_interval", "SLUICE_STATS_INTERVAL", _float(0.1, 86_400), "stats line (s)"),
    _Spec(
        "queue_attributes_interval",
        "SLUICE_QUEUE_ATTRIBUTES_INTERVAL",
        _float(1, 3600),
        "GetQueueAttributes for metrics (s)",
    ),
    _Spec("retry_max_backoff", "SLUICE_RETRY_MAX_BACKOFF", _float(0.01, 3600), "backoff cap"),
    _Spec("log_format", "SLUICE_LOG_FORMAT", _enum(LogFormat), "auto, json or console"),
    _Spec("log_level", "SLUICE_LOG_LEVEL", _choice("debug", "info", "warning", "error"), "level"),
    _Spec("fault_point", "SLUICE_FAULT_POINT", _enum(FaultPoint), "TEST ONLY: crash point"),
    _Spec("fault_after", "SLUICE_FAULT_AFTER", _int(1, 1_000_000), "TEST ONLY: crash on Nth"),
    _Spec(
        "redshift_connection",
        "SLUICE_REDSHIFT_CONNECTION",
        _enum(RedshiftConnection),
        "data_api or direct",
    ),
    _Spec("redshift_workgroup", "SLUICE_REDSHIFT_WORKGROUP", _text, "Redshift Serverless"),
    _Spec("redshift_secret_arn", "SLUICE_REDSHIFT_SECRET_ARN", _arn, "Data API secret"),
    _Spec("redshift_iam_auth", "SLUICE_REDSHIFT_IAM_AUTH", _bool, "direct: GetClusterCredentials"),
    _Spec(
        "redshift_load_path",
        "SLUICE_REDSHIFT_LOAD_PATH",
        _enum(RedshiftLoadPath),
        "auto, copy or insert",
    ),
    _Spec("redshift_iam_role", "SLUICE_REDSHIFT_IAM_ROLE", _arn, "role COPY reads S3 with"),
    _Spec("redshift_sort_key", "SLUICE_REDSHIFT_SORT_KEY", _column, "init-db sort key column"),
    _Spec(
        "redshift_statement_timeout",
        "SLUICE_REDSHIFT_STATEMENT_TIMEOUT",
        _float(1, 86_400),
        "Data API statement deadline (s)",
    ),
    _Spec("s3_staging_uri", "SLUICE_S3_STAGING_URI", _s3_uri, "s3://bucket/prefix for COPY"),
    _Spec("s3_endpoint_url", "AWS_ENDPOINT_URL_S3", _url, "S3 endpoint (an emulator)"),
    _Spec(
        "redshift_data_endpoint_url",
        "AWS_ENDPOINT_URL_REDSHIFT_DATA",
        _url,
        "Redshift Data API endpoint (an emulator)",
    ),
    _Spec(
        "redshift_endpoint_url",
        "AWS_ENDPOINT_URL_REDSHIFT",
        _url,
        "Redshift API endpoint (GetClusterCredentials)",
    ),
)
_BY_NAME = {spec.name: spec for spec in SPECS}
assert set(_BY_NAME) == {f.name for f in fields(Settings)}, "every setting needs a spec"


def _read_toml(path: str) -> dict[str, object]:
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("sluice", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [sluice] must be a table")
    unknown = sorted(set(table) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return dict(table)


def load_settings(
    env: Mapping[str, str],
    flags: Mapping[str, object] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Build the settings from a TOML file, then ``env``, then ``flags`` (highest)."""
    raw: dict[str, tuple[str, str]] = {}  # name -> (where it came from, raw text)
    path = config_file or env.get("SLUICE_CONFIG")
    if path:
        for name, value in _read_toml(path).items():
            raw[name] = (f"{name} in {path}", _as_text(value))
    for spec in SPECS:
        if spec.env in env and env[spec.env].strip() != "":
            raw[spec.name] = (spec.env, env[spec.env])
    for name, value in (flags or {}).items():
        if value is not None:
            raw[name] = (_BY_NAME[name].flag, _as_text(value))

    values: dict[str, Any] = {}
    for name, (source, text) in raw.items():
        spec = _BY_NAME[name]
        try:
            values[name] = spec.parse(text)
        except ValueError as exc:
            shown = "***" if spec.secret else repr(text)
            raise ConfigError(f"{source}={shown} is invalid: {exc}") from None
    values.setdefault("worker_id", f"{socket.gethostname()}-{os.getpid()}")
    if values.get("sink") is SinkKind.REDSHIFT:
        redshift_defaults(values)
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _check_together(s: Settings) -> None:
    """Rules that involve more than one setting."""
    if s.sink is SinkKind.POSTGRES and not s.database_url:
        raise ConfigError("SLUICE_DATABASE_URL is required when SLUICE_SINK=postgres")
    if s.sink is SinkKind.REDSHIFT:
        check_redshift(s)
    if s.batch_max_age * 2 >= s.visibility_timeout:
        raise ConfigError(
            f"SLUICE_BATCH_MAX_AGE={s.batch_max_age:g} is invalid: must be under half of "
            f"SLUICE_VISIBILITY_TIMEOUT={s.visibility_timeout} so a batch is loaded and "
            "deleted before its messages could reappear"
        )
    if s.max_held_messages < s.max_messages * s.receive_concurrency:
        raise ConfigError(
            f"SLUICE_MAX_HELD_MESSAGES={s.max_held_messages} is invalid: must be at least "
            f"SQS_MAX_MESSAGES x SLUICE_RECEIVE_CONCURRENCY = "
            f"{s.max_messages * s.receive_concurrency}"
        )


_PASSWORD_VALUE = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_secret_url(value: str) -> str:
    """Hide the password in a URL (user info or query) or a libpq key=value string."""
    masked = _PASSWORD_VALUE.sub(r"\1***", value)  # key=value and ?password=... forms
    if "://" not in masked:
        return masked
    parts = urlsplit(masked)
    if not parts.password:
        return masked
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, source variable, value) rows for ``sluice config show``, secrets masked."""
    rows = []
    for spec in SPECS:
        value = getattr(settings, spec.name)
        if value is None:
            text = ""
        elif spec.secret:
            text = mask_secret_url(str(value))
        else:
            text = _as_text(value)
        rows.append((spec.name, spec.env, text))
    return rows


def flag_specs() -> tuple[tuple[str, str, str], ...]:
    """(name, flag, help) for the CLI to generate one option per setting."""
    return tuple((s.name, s.flag, f"{s.help} [env {s.env}]") for s in SPECS)
