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
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sluice.config_parse import (
    Spec,
    byte_size,
    choice_of,
    enum_of,
    float_range,
    http_url,
    int_range,
    listen_host,
    nonempty_text,
    parse_bool,
    pg_url,
    read_toml,
    setting_text,
    table_identifier,
)
from sluice.config_region import FALLBACK_REGION, endpoint_variants, resolve_region
from sluice.config_sink import SinkKind, infer_from
from sluice.errors import ConfigError
from sluice.faultpoints import FaultPoint
from sluice.memory import MIB, default_max_held_bytes, memory_limit
from sluice.model import SQS_MAX_MESSAGE_BYTES
from sluice.scaling import MAX_PROCESSES, AutoscalePolicy, ScaleRange
from sluice.sinks.profiles import PROFILES, WarehouseProfile
from sluice.sinks.redshift.settings import REDSHIFT_SPECS, REDSHIFT_TARGET_SPECS, RedshiftSettings


class SqsClientKind(enum.Enum):
    """Which SQS client: the lean JSON-protocol one (fast) or aiobotocore's (reference)."""

    WIRE = "wire"
    BOTOCORE = "botocore"


class LogFormat(enum.Enum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know, validated. See ``docs/configuration.md``."""

    queue_url: str | None = None
    max_messages: int = 10
    wait_time_seconds: int = 20
    aws_region: str = FALLBACK_REGION  # load_settings resolves it (see config_region)
    sqs_endpoint_url: str | None = None
    worker_id: str = ""
    enable_consumer: bool = True
    port: int = 3000
    table_name: str = "appsflyer_events"
    sink: SinkKind | None = None  # inferred when not given; see config_sink
    database_url: str | None = None
    duckdb_path: str = "sluice.duckdb"
    dlq_url: str | None = None
    sqs_client: SqsClientKind = SqsClientKind.WIRE
    mapping_file: str | None = None
    receive_concurrency: int = 8  # fixed when given; else where the adaptive count starts
    max_receive_concurrency: int = 64
    delete_concurrency: int | None = None  # None: adaptive
    max_delete_concurrency: int = 64
    max_held_messages: int = 10_000
    max_held_bytes: int = 256 * MIB  # load_settings derives it from memory when not given
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
    processes: int = 1
    autoscale: ScaleRange | None = None
    target_backlog_per_worker: int = 50_000
    scale_out_cooldown: float = 60.0
    scale_in_cooldown: float = 300.0
    scale_out_age: float = 600.0
    restart_max_backoff: float = 30.0
    control_socket: str | None = None
    http_host: str = "0.0.0.0"  # noqa: S104  probes and Prometheus scrape from outside
    redshift: RedshiftSettings = field(default_factory=RedshiftSettings)
    # Derived, not a setting: the variables SLUICE_SINK was inferred from, for the logs.
    sink_inferred_from: str | None = None
    # Derived: SLUICE_RECEIVE_CONCURRENCY was given, so the count is fixed, not adaptive.
    receive_concurrency_given: bool = False

    @property
    def heartbeat_interval(self) -> float:
        """How often held messages are checked for visibility extension."""
        return max(0.5, self.visibility_timeout / 6)

    @property
    def profile(self) -> WarehouseProfile | None:
        """What the chosen warehouse allows and wants (None until a sink is chosen)."""
        return None if self.sink is None else PROFILES[self.sink]

    @property
    def effective_load_concurrency(self) -> int:
        profile = self.profile
        return (
            self.load_concurrency
            if profile is None
            else profile.load_concurrency(self.load_concurrency)
        )

    @property
    def sink_value(self) -> str:
        return "" if self.sink is None else self.sink.value

    @property
    def supervised(self) -> bool:
        """Several worker processes under one supervisor rather than one worker."""
        return self.processes > 1 or self.autoscale is not None

    @property
    def autoscale_policy(self) -> AutoscalePolicy:
        scale = self.autoscale or ScaleRange(self.processes, self.processes)
        return AutoscalePolicy(
            min_workers=scale.low,
            max_workers=scale.high,
            target_backlog_per_worker=self.target_backlog_per_worker,
            scale_out_cooldown=self.scale_out_cooldown,
            scale_in_cooldown=self.scale_in_cooldown,
            scale_out_age=self.scale_out_age,
        )

    @property
    def control_socket_path(self) -> Path:
        """The supervisor's control socket (`sluice scale`, `sluice status`)."""
        if self.control_socket:
            return Path(self.control_socket)
        return Path(tempfile.gettempdir()) / f"sluice-{os.getuid()}" / "supervisor.sock"


SPECS: tuple[Spec, ...] = (
    Spec("queue_url", "SQS_QUEUE_URL", http_url, "URL of the source SQS queue"),
    Spec("max_messages", "SQS_MAX_MESSAGES", int_range(1, 10), "messages asked for per receive"),
    Spec("wait_time_seconds", "SQS_WAIT_TIME_SECONDS", int_range(0, 20), "long-poll wait"),
    Spec("aws_region", "AWS_REGION", nonempty_text, "AWS region"),
    Spec("sqs_endpoint_url", "AWS_ENDPOINT_URL_SQS", http_url, "SQS endpoint (an emulator)"),
    Spec("worker_id", "WORKER_ID", nonempty_text, "name of this worker in logs and metrics"),
    Spec("enable_consumer", "ENABLE_SQS_CONSUMER", parse_bool, "false: run without consuming"),
    Spec("port", "PORT", int_range(0, 65535), "HTTP port for /metrics, /healthz, /readyz (0: off)"),
    Spec("table_name", "REDSHIFT_TABLE_NAME", table_identifier, "target table, whatever the sink"),
    *REDSHIFT_TARGET_SPECS,
    Spec("sink", "SLUICE_SINK", enum_of(SinkKind), "warehouse: duckdb, postgres or redshift"),
    Spec("database_url", "SLUICE_DATABASE_URL", pg_url, "PostgreSQL DSN", secret=True),
    Spec("duckdb_path", "SLUICE_DUCKDB_PATH", nonempty_text, "DuckDB database file"),
    Spec("dlq_url", "SLUICE_DLQ_URL", http_url, "dead-letter queue URL for permanent failures"),
    Spec("sqs_client", "SLUICE_SQS_CLIENT", enum_of(SqsClientKind), "wire (fast) or botocore"),
    Spec("mapping_file", "SLUICE_MAPPING_FILE", nonempty_text, "TOML table mapping"),
    Spec(
        "receive_concurrency",
        "SLUICE_RECEIVE_CONCURRENCY",
        int_range(1, 256),
        "long polls in flight, fixed (unset: adaptive)",
    ),
    Spec(
        "max_receive_concurrency",
        "SLUICE_MAX_RECEIVE_CONCURRENCY",
        int_range(1, 256),
        "adaptive long polls at most",
    ),
    Spec(
        "delete_concurrency",
        "SLUICE_DELETE_CONCURRENCY",
        int_range(1, 256),
        "delete calls in flight, fixed (unset: adaptive)",
    ),
    Spec(
        "max_delete_concurrency",
        "SLUICE_MAX_DELETE_CONCURRENCY",
        int_range(1, 256),
        "adaptive delete calls at most",
    ),
    Spec("max_held_messages", "SLUICE_MAX_HELD_MESSAGES", int_range(10, 1_000_000), "backpressure"),
    Spec(
        "max_held_bytes",
        "SLUICE_MAX_HELD_BYTES",
        byte_size(MIB, 64 * 1024 * MIB),
        "bodies held at most (bytes, or 512MiB); default: a quarter of memory, 32 MiB-1 GiB",
    ),
    Spec("batch_max_rows", "SLUICE_BATCH_MAX_ROWS", int_range(1, 1_000_000), "flush at rows"),
    Spec("batch_max_bytes", "SLUICE_BATCH_MAX_BYTES", int_range(1024, 1 << 30), "flush at bytes"),
    Spec("batch_max_age", "SLUICE_BATCH_MAX_AGE", float_range(0.01, 900), "flush at age (s)"),
    Spec("load_concurrency", "SLUICE_LOAD_CONCURRENCY", int_range(1, 16), "loads in parallel"),
    Spec("visibility_timeout", "SLUICE_VISIBILITY_TIMEOUT", int_range(2, 43_200), "visibility (s)"),
    Spec("shutdown_grace", "SLUICE_SHUTDOWN_GRACE", float_range(0.5, 3600), "stop deadline (s)"),
    Spec("stats_interval", "SLUICE_STATS_INTERVAL", float_range(0.1, 86_400), "stats line (s)"),
    Spec(
        "queue_attributes_interval",
        "SLUICE_QUEUE_ATTRIBUTES_INTERVAL",
        float_range(1, 3600),
        "GetQueueAttributes for metrics (s)",
    ),
    Spec("retry_max_backoff", "SLUICE_RETRY_MAX_BACKOFF", float_range(0.01, 3600), "backoff cap"),
    Spec("log_format", "SLUICE_LOG_FORMAT", enum_of(LogFormat), "auto, json or console"),
    Spec("log_level", "SLUICE_LOG_LEVEL", choice_of("debug", "info", "warning", "error"), "level"),
    Spec("fault_point", "SLUICE_FAULT_POINT", enum_of(FaultPoint), "TEST ONLY: crash point"),
    Spec("fault_after", "SLUICE_FAULT_AFTER", int_range(1, 1_000_000), "TEST ONLY: crash on Nth"),
    Spec("processes", "SLUICE_PROCESSES", int_range(1, MAX_PROCESSES), "worker processes"),
    Spec("autoscale", "SLUICE_AUTOSCALE", ScaleRange.parse, "MIN:MAX processes by depth"),
    Spec(
        "target_backlog_per_worker",
        "SLUICE_TARGET_BACKLOG_PER_WORKER",
        int_range(1, 1_000_000_000),
        "autoscale: visible messages one worker should face",
    ),
    Spec(
        "scale_out_cooldown",
        "SLUICE_SCALE_OUT_COOLDOWN",
        float_range(0, 86_400),
        "between scale-outs (s)",
    ),
    Spec(
        "scale_in_cooldown",
        "SLUICE_SCALE_IN_COOLDOWN",
        float_range(0, 86_400),
        "before a scale-in (s)",
    ),
    Spec("scale_out_age", "SLUICE_SCALE_OUT_AGE", float_range(1, 1_209_600), "oldest-age SLO (s)"),
    Spec(
        "restart_max_backoff",
        "SLUICE_RESTART_MAX_BACKOFF",
        float_range(0.1, 3600),
        "restart cap (s)",
    ),
    Spec("control_socket", "SLUICE_CONTROL_SOCKET", nonempty_text, "supervisor control socket"),
    Spec("http_host", "SLUICE_HTTP_HOST", listen_host, "address the HTTP endpoints listen on"),
    *REDSHIFT_SPECS,
)
_BY_NAME = {spec.name: spec for spec in SPECS}
_DERIVED = {"sink_inferred_from", "receive_concurrency_given"}
# The nested settings objects, by their field in Settings.
_GROUPS: dict[str, type[RedshiftSettings]] = {"redshift": RedshiftSettings}
assert {spec.attribute for spec in SPECS} | _DERIVED == {
    f"{f.name}.{inner.name}" if f.name in _GROUPS else f.name
    for f in fields(Settings)
    for inner in (fields(_GROUPS[f.name]) if f.name in _GROUPS else (f,))
}, "every setting: a spec"


def load_settings(
    env: Mapping[str, str],
    flags: Mapping[str, object] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Build the settings from a TOML file, then ``env``, then ``flags`` (highest)."""
    raw: dict[str, tuple[str, str]] = {}  # name -> (where it came from, raw text)
    path = config_file or env.get("SLUICE_CONFIG")
    if path:
        for name, value in read_toml(path, set(_BY_NAME)).items():
            raw[name] = (f"{name} in {path}", setting_text(value))
    for spec in SPECS:
        if spec.env in env and env[spec.env].strip() != "":
            raw[spec.name] = (spec.env, env[spec.env])
    if "aws_region" not in raw and env.get("AWS_DEFAULT_REGION", "").strip():
        raw["aws_region"] = ("AWS_DEFAULT_REGION", env["AWS_DEFAULT_REGION"])  # the SDKs' too
    for name, value in (flags or {}).items():
        if value is not None:
            raw[name] = (_BY_NAME[name].flag, setting_text(value))

    values: dict[str, Any] = {}
    for name, (source, text) in raw.items():
        spec = _BY_NAME[name]
        try:
            values[name] = spec.parse(text)
        except ValueError as exc:
            shown = "***" if spec.secret else repr(text)
            raise ConfigError(f"{source}={shown} is invalid: {exc}") from None
    given = (raw["aws_region"][0], values["aws_region"]) if "aws_region" in values else None
    values["aws_region"] = resolve_region(
        given, values.get("queue_url"), values.get("dlq_url"), env
    )
    # Read by each SQS client through the SDK's own chain; checked here, once, so a value
    # the SDK would misread or refuse on every call stops start-up instead.
    endpoint_variants(env, values.get("sqs_endpoint_url"))
    _derived_defaults(values)
    return _checked(_assembled(values))


def _assembled(values: Mapping[str, Any]) -> Settings:
    """Settings from values by spec name: nested ones (``redshift.database``) in their group."""
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
    for name, value in values.items():
        group, _, attribute = (_BY_NAME[name].attribute if name in _BY_NAME else name).rpartition(
            "."
        )
        (groups[group] if group else top)[attribute] = value
    for name, group_type in _GROUPS.items():
        top[name] = group_type(**groups[name])
    return Settings(**top)


def _checked(settings: Settings) -> Settings:
    try:
        _check_together(settings)
    except ConfigError as exc:
        if settings.sink_inferred_from is None:
            raise
        # The user never wrote SLUICE_SINK: say where the rule that failed comes from.
        inferred = f"SLUICE_SINK={settings.sink_value} inferred from {settings.sink_inferred_from}"
        raise ConfigError(f"{exc} ({inferred})") from None
    return settings


def _derived_defaults(values: dict[str, Any]) -> None:
    """Defaults that depend on this host or on other settings, for what was not given."""
    values.setdefault("worker_id", f"{socket.gethostname()}-{os.getpid()}")
    values["receive_concurrency_given"] = "receive_concurrency" in values
    if "max_held_bytes" not in values:
        scale = values.get("autoscale")
        processes = scale.high if isinstance(scale, ScaleRange) else values.get("processes", 1)
        values["max_held_bytes"] = default_max_held_bytes(memory_limit(), int(processes))
    if "sink" not in values:
        inferred = infer_from(values)
        if inferred.sink is not None:
            values["sink"] = inferred.sink
            values["sink_inferred_from"] = inferred.because
    sink = values.get("sink")
    if isinstance(sink, SinkKind):
        visibility = int(values.get("visibility_timeout", Settings.visibility_timeout))
        for name, value in PROFILES[sink].defaults.for_visibility(visibility).items():
            values.setdefault(name, value)


def _check_together(s: Settings) -> None:
    """Rules that involve more than one setting."""
    profile = s.profile
    if profile is not None:
        profile.check(s)
    if s.batch_max_age * 2 >= s.visibility_timeout:
        raise ConfigError(
            f"SLUICE_BATCH_MAX_AGE={s.batch_max_age:g} is invalid: must be under half of "
            f"SLUICE_VISIBILITY_TIMEOUT={s.visibility_timeout} so a batch is loaded and "
            "deleted before its messages could reappear"
        )
    if s.processes > 1 and s.autoscale is not None:
        raise ConfigError(
            f"SLUICE_PROCESSES={s.processes} conflicts with SLUICE_AUTOSCALE={s.autoscale}: "
            "give a fixed count or a range, not both"
        )
    if s.supervised and profile is not None and profile.max_writers is not None:
        writers = "one" if profile.max_writers == 1 else profile.max_writers
        raise ConfigError(
            f"SLUICE_SINK={s.sink_value} allows {writers} writer process: "
            "use SLUICE_SINK=postgres (or one process) with SLUICE_PROCESSES or SLUICE_AUTOSCALE"
        )
    if s.max_held_bytes < s.max_messages * SQS_MAX_MESSAGE_BYTES:
        raise ConfigError(
            f"SLUICE_MAX_HELD_BYTES={s.max_held_bytes} is invalid: must be at least "
            f"SQS_MAX_MESSAGES x 1 MiB = {s.max_messages * SQS_MAX_MESSAGE_BYTES}, what one "
            "receive of the largest messages brings"
        )
    if s.max_held_messages < s.max_messages * s.receive_concurrency:
        raise ConfigError(
            f"SLUICE_MAX_HELD_MESSAGES={s.max_held_messages} is invalid: must be at least "
            f"SQS_MAX_MESSAGES x SLUICE_RECEIVE_CONCURRENCY = "
            f"{s.max_messages * s.receive_concurrency}"
        )
