"""Settings: parsing, ranges, priority, cross-field rules, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config import FaultPoint, LogFormat, Settings, SinkKind, load_settings
from sluice.config_parse import validate_identifier
from sluice.config_text import describe, mask_secret_url
from sluice.errors import ConfigError

BASE_ENV = {"WORKER_ID": "w-test"}  # keeps the hostname-derived default out of the way


def load(env: dict[str, str] | None = None, **kwargs: object) -> Settings:
    return load_settings(BASE_ENV | (env or {}), **kwargs)  # type: ignore[arg-type]


def config_error(env: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(env, **kwargs)
    return str(info.value)


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sluice.toml"
    path.write_text(text)
    return str(path)


# -- defaults and simple parsing -------------------------------------------------------------


def test_defaults_are_valid_and_as_documented() -> None:
    s = load()
    assert s.max_messages == 10
    assert s.wait_time_seconds == 20
    assert s.sink is None  # never an embedded file by default: see test_sink_choice.py
    assert s.table_name == "appsflyer_events"
    assert s.enable_consumer is True
    assert s.worker_id == "w-test"
    assert load({"SLUICE_SINK": "duckdb"}).effective_load_concurrency == 1  # one writer


def test_worker_id_defaults_to_something_non_empty() -> None:
    assert load_settings({}).worker_id


def test_values_are_parsed_to_their_types() -> None:
    s = load(
        {
            "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123/q",
            "SQS_MAX_MESSAGES": " 7 ",
            "SQS_WAIT_TIME_SECONDS": "0",
            "ENABLE_SQS_CONSUMER": "off",
            "SLUICE_SINK": "POSTGRES",
            "SLUICE_DATABASE_URL": "postgresql://u:pw@db:5432/x",
            "SLUICE_LOAD_CONCURRENCY": "3",
            "SLUICE_BATCH_MAX_AGE": "0.5",
            "SLUICE_LOG_FORMAT": "json",
            "SLUICE_LOG_LEVEL": "WARNING",
            "SLUICE_FAULT_POINT": "mid_delete",
            "REDSHIFT_TABLE_NAME": "analytics.events_v2",
        }
    )
    assert s.queue_url == "https://sqs.us-east-1.amazonaws.com/123/q"
    assert s.max_messages == 7
    assert s.wait_time_seconds == 0
    assert s.enable_consumer is False
    assert s.sink is SinkKind.POSTGRES
    assert s.effective_load_concurrency == 3
    assert s.batch_max_age == 0.5
    assert s.log_format is LogFormat.JSON
    assert s.log_level == "warning"
    assert s.fault_point is FaultPoint.MID_DELETE
    assert s.table_name == "analytics.events_v2"


def test_empty_env_value_means_unset() -> None:
    assert load({"SQS_MAX_MESSAGES": "  "}).max_messages == 10


def test_heartbeat_interval_follows_visibility() -> None:
    assert load({"SLUICE_VISIBILITY_TIMEOUT": "60"}).heartbeat_interval == 10
    assert (
        load({"SLUICE_VISIBILITY_TIMEOUT": "2", "SLUICE_BATCH_MAX_AGE": "0.1"}).heartbeat_interval
        == 0.5
    )


# -- ranges: the message names the setting and what is allowed --------------------------------


@pytest.mark.parametrize("value", ["0", "11", "-1", "ten", "5.5"])
def test_max_messages_outside_1_to_10_is_refused(value: str) -> None:
    message = config_error({"SQS_MAX_MESSAGES": value})
    assert message.startswith("SQS_MAX_MESSAGES=")
    assert repr(value) in message
    assert "from 1 to 10" in message


@pytest.mark.parametrize("value", ["1", "10"])
def test_max_messages_bounds_are_inclusive(value: str) -> None:
    assert load({"SQS_MAX_MESSAGES": value}).max_messages == int(value)


@pytest.mark.parametrize("value", ["21", "-1", "1.5"])
def test_wait_time_outside_0_to_20_is_refused(value: str) -> None:
    message = config_error({"SQS_WAIT_TIME_SECONDS": value})
    assert message.startswith("SQS_WAIT_TIME_SECONDS=")
    assert "from 0 to 20" in message


@pytest.mark.parametrize("value", ["0", "20"])
def test_wait_time_bounds_are_inclusive(value: str) -> None:
    assert load({"SQS_WAIT_TIME_SECONDS": value}).wait_time_seconds == int(value)


def test_flag_error_names_the_flag_not_the_env() -> None:
    message = config_error(flags={"max_messages": 11})
    assert message.startswith("--max-messages=")
    assert "SQS_MAX_MESSAGES" not in message
    assert "from 1 to 10" in message


def test_toml_error_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sluice]\nwait_time_seconds = 30\n")
    message = config_error(config_file=path)
    assert message.startswith(f"wait_time_seconds in {path}=")
    assert "from 0 to 20" in message


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({"ENABLE_SQS_CONSUMER": "maybe"}, "must be true or false"),
        ({"SLUICE_SINK": "snowflake"}, "must be one of: duckdb, postgres, redshift"),
        ({"SLUICE_LOG_FORMAT": "xml"}, "must be one of: auto, json, console"),
        ({"SLUICE_LOG_LEVEL": "trace"}, "must be one of: debug, info, warning, error"),
        ({"SQS_QUEUE_URL": "ftp://example.com/q"}, "must be an http(s) URL"),
        ({"SQS_QUEUE_URL": "not a url"}, "must be an http(s) URL"),
        ({"AWS_ENDPOINT_URL_SQS": "localhost:4566"}, "must be an http(s) URL"),
        ({"SLUICE_DLQ_URL": "https://"}, "must be an http(s) URL"),
        ({"PORT": "70000"}, "from 0 to 65535"),
        ({"SLUICE_BATCH_MAX_AGE": "0"}, "must be a number from 0.01 to 900"),
        ({"SLUICE_BATCH_MAX_AGE": "nan"}, "must be a number from 0.01 to 900"),
        ({"SLUICE_BATCH_MAX_AGE": "soon"}, "must be a number from 0.01 to 900"),
        ({"SLUICE_LOAD_CONCURRENCY": "17"}, "from 1 to 16"),
        ({"SLUICE_VISIBILITY_TIMEOUT": "1"}, "from 2 to 43200"),
        ({"SLUICE_BATCH_MAX_BYTES": "1023"}, "from 1024 to 1073741824"),
    ],
)
def test_each_kind_of_bad_value_is_refused_with_what_is_allowed(
    env: dict[str, str], allowed: str
) -> None:
    (name,) = env
    message = config_error(env)
    assert message.startswith(f"{name}=")
    assert allowed in message


@pytest.mark.parametrize(
    "table",
    [
        "x; DROP TABLE y",
        'events"; DROP TABLE users; --',
        "a.b.c",
        "1events",
        "events-v2",
        "",
        "x" * 64,
        "schema.x y",
    ],
)
def test_table_names_that_are_not_plain_identifiers_are_refused(table: str) -> None:
    if table == "":
        # An empty variable means "unset"; the flag is where an empty name can arrive.
        message = config_error(flags={"table_name": "  "})
        assert message.startswith("--table-name=")
    else:
        message = config_error({"REDSHIFT_TABLE_NAME": table})
        assert message.startswith("REDSHIFT_TABLE_NAME=")
    assert "identifier" in message


def test_table_name_with_embedded_newline_is_refused() -> None:
    # `$` in the identifier pattern also matches just before a trailing newline, so
    # "x\n" passes as a schema part unless the match is anchored with \Z / fullmatch.
    message = config_error({"REDSHIFT_TABLE_NAME": "x\n.y"})
    assert message.startswith("REDSHIFT_TABLE_NAME=")


@pytest.mark.parametrize("name", ["events", "_e", "public.events", "s" * 63])
def test_plain_identifiers_are_accepted(name: str) -> None:
    assert load({"REDSHIFT_TABLE_NAME": name}).table_name == name


def test_validate_identifier_refuses_a_trailing_newline() -> None:
    with pytest.raises(ValueError, match="identifier"):
        validate_identifier("events\n")


# -- priority: TOML < env < flags -------------------------------------------------------------


def test_priority_toml_then_env_then_flags(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sluice]\nmax_messages = 3\nworker_id = 'from-toml'\n")
    assert load_settings({}, config_file=path).max_messages == 3
    assert load_settings({}, config_file=path).worker_id == "from-toml"
    env = {"SQS_MAX_MESSAGES": "5"}
    assert load_settings(env, config_file=path).max_messages == 5
    assert load_settings(env, {"max_messages": 7}, config_file=path).max_messages == 7
    # A flag left as None (not given) does not override.
    assert load_settings(env, {"max_messages": None}, config_file=path).max_messages == 5


def test_config_file_can_come_from_sluice_config(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "wait_time_seconds = 4\n")  # top-level keys work too
    assert load({"SLUICE_CONFIG": path}).wait_time_seconds == 4


def test_toml_native_types_are_accepted(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path, "[sluice]\nenable_consumer = false\nbatch_max_age = 1.5\nsink = 'duckdb'\n"
    )
    s = load(config_file=path)
    assert s.enable_consumer is False
    assert s.batch_max_age == 1.5


def test_flag_with_bool_and_enum_values() -> None:
    s = load(flags={"enable_consumer": False, "log_format": LogFormat.CONSOLE})
    assert s.enable_consumer is False
    assert s.log_format is LogFormat.CONSOLE


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sluice]\nmax_messages = 3\nmax_mesages = 4\n")
    message = config_error(config_file=path)
    assert "unknown setting" in message
    assert "max_mesages" in message
    assert path in message


def test_missing_and_broken_toml_files_are_config_errors(tmp_path: Path) -> None:
    assert "does not exist" in config_error(config_file=str(tmp_path / "nope.toml"))
    broken = write_toml(tmp_path, "[sluice\nmax_messages = 3\n")
    assert "not valid TOML" in config_error(config_file=broken)
    not_table = write_toml(tmp_path, "sluice = 3\n")
    assert "must be a table" in config_error(config_file=not_table)


# -- rules that involve several settings ---------------------------------------------------


def test_batch_age_must_be_under_half_the_visibility_timeout() -> None:
    message = config_error({"SLUICE_VISIBILITY_TIMEOUT": "4", "SLUICE_BATCH_MAX_AGE": "2"})
    assert "SLUICE_BATCH_MAX_AGE" in message
    assert "SLUICE_VISIBILITY_TIMEOUT" in message
    assert "half" in message
    assert (
        load({"SLUICE_VISIBILITY_TIMEOUT": "4", "SLUICE_BATCH_MAX_AGE": "1.9"}).batch_max_age == 1.9
    )


def test_postgres_needs_a_database_url() -> None:
    message = config_error({"SLUICE_SINK": "postgres"})
    assert "SLUICE_DATABASE_URL" in message
    assert "required" in message


def test_held_messages_must_cover_one_receive_per_receiver() -> None:
    message = config_error(
        {
            "SLUICE_MAX_HELD_MESSAGES": "50",
            "SQS_MAX_MESSAGES": "10",
            "SLUICE_RECEIVE_CONCURRENCY": "8",
        }
    )
    assert "SLUICE_MAX_HELD_MESSAGES=50" in message
    assert "80" in message
    s = load(
        {
            "SLUICE_MAX_HELD_MESSAGES": "80",
            "SQS_MAX_MESSAGES": "10",
            "SLUICE_RECEIVE_CONCURRENCY": "8",
        }
    )
    assert s.max_held_messages == 80


# -- secrets --------------------------------------------------------------------------------

SECRET = "s3cr3t-Pa55"


def _describe_text(url: str) -> tuple[str, str]:
    s = load({"SLUICE_SINK": "postgres", "SLUICE_DATABASE_URL": url})
    rows = describe(s)
    shown = dict((name, value) for name, _env, value in rows)
    return shown["database_url"], repr(rows)


def test_describe_masks_the_password_in_a_url() -> None:
    shown, everything = _describe_text(f"postgresql://loader:{SECRET}@db.internal:5432/warehouse")
    assert shown == "postgresql://loader:***@db.internal:5432/warehouse"
    assert SECRET not in everything


def test_describe_masks_the_password_in_key_value_form() -> None:
    shown, everything = _describe_text(f"host=db.internal user=loader password={SECRET} dbname=w")
    assert shown == "host=db.internal user=loader password=*** dbname=w"
    assert SECRET not in everything


def test_describe_masks_a_quoted_password_with_spaces() -> None:
    # libpq accepts password='two words'; every part of it must be hidden.
    _, everything = _describe_text("host=db user=loader password='plugh xyzzy' dbname=w")
    assert "plugh" not in everything
    assert "xyzzy" not in everything


def test_describe_masks_a_password_given_as_a_uri_query_parameter() -> None:
    # libpq URIs accept ?password=...; it is as secret there as in the userinfo.
    _, everything = _describe_text(f"postgresql://db.internal/warehouse?user=u&password={SECRET}")
    assert SECRET not in everything


def test_describe_lists_every_setting_with_its_env_name() -> None:
    from sluice.config import SPECS
    from sluice.sinks.redshift.settings import RedshiftSettings

    rows = describe(load())
    # Not settings: where an inferred sink came from; whether a receive count was given.
    derived = {"sink_inferred_from", "receive_concurrency_given"}
    # Nested settings are fields of their group (redshift.database for redshift_database).
    attribute = {spec.name: spec.attribute for spec in SPECS}
    nested = {f"redshift.{name}" for name in RedshiftSettings.__dataclass_fields__}
    assert sorted(attribute[name] for name, _, _ in rows) == sorted(
        set(Settings.__dataclass_fields__) - derived - {"redshift"} | nested
    )
    assert ("max_messages", "SQS_MAX_MESSAGES", "10") in rows
    assert ("queue_url", "SQS_QUEUE_URL", "") in rows


def test_url_without_password_is_shown_as_is() -> None:
    assert mask_secret_url("postgresql://db/x") == "postgresql://db/x"


def test_invalid_database_url_error_does_not_echo_it() -> None:
    message = config_error({"SLUICE_DATABASE_URL": f"mysql//root:{SECRET}"})
    assert message.startswith("SLUICE_DATABASE_URL=***")
    assert SECRET not in message
    assert "postgresql://" in message


# ---- the Redshift sink's settings

REDSHIFT_ENV = {
    "SLUICE_SINK": "redshift",
    "REDSHIFT_CLUSTER_IDENTIFIER": "events-cluster",
    "REDSHIFT_DATABASE": "analytics",
    "REDSHIFT_DB_USER": "sluice",
}
ROLE = "arn:aws:iam::123456789012:role/sluice-copy"


def test_redshift_defaults_are_larger_batches_inside_the_visibility_budget() -> None:
    from sluice.config import Settings

    s = load_settings(REDSHIFT_ENV)
    # No copy of the visibility default to drift: the age derives from Settings' own.
    assert s.batch_max_age == min(30.0, Settings().visibility_timeout / 4)
    assert (s.batch_max_rows, s.batch_max_age, s.load_concurrency) == (20_000, 30.0, 3)
    assert s.max_held_messages >= s.batch_max_rows * (s.load_concurrency + 1)
    short = load_settings(REDSHIFT_ENV | {"SLUICE_VISIBILITY_TIMEOUT": "40"})
    assert short.batch_max_age == 10.0
    explicit = load_settings(REDSHIFT_ENV | {"SLUICE_BATCH_MAX_ROWS": "500"})
    assert explicit.batch_max_rows == 500
    assert load_settings({}).batch_max_rows == 5_000  # other sinks keep theirs


def test_redshift_data_api_needs_a_complete_target() -> None:
    with pytest.raises(ConfigError, match="REDSHIFT_DATABASE is required"):
        load_settings({"SLUICE_SINK": "redshift"})
    with pytest.raises(ConfigError, match="SLUICE_REDSHIFT_WORKGROUP"):
        load_settings({"SLUICE_SINK": "redshift", "REDSHIFT_DATABASE": "dev"})
    serverless = load_settings(
        {"SLUICE_SINK": "redshift", "REDSHIFT_DATABASE": "dev", "SLUICE_REDSHIFT_WORKGROUP": "wg"}
    )
    assert serverless.redshift.copy is False  # no staging URI: the insert path


def test_redshift_copy_path_needs_the_role_and_a_valid_uri() -> None:
    staged = REDSHIFT_ENV | {"SLUICE_S3_STAGING_URI": "s3://bucket/sluice/"}
    with pytest.raises(ConfigError, match="SLUICE_REDSHIFT_IAM_ROLE is required"):
        load_settings(staged)
    s = load_settings(staged | {"SLUICE_REDSHIFT_IAM_ROLE": ROLE})
    assert s.redshift.copy and s.redshift.s3_staging_uri == "s3://bucket/sluice"
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        load_settings(REDSHIFT_ENV | {"SLUICE_S3_STAGING_URI": "https://bucket/x"})
    with pytest.raises(ConfigError, match="must be an ARN"):
        load_settings(REDSHIFT_ENV | {"SLUICE_REDSHIFT_IAM_ROLE": "role/x'; --"})
    with pytest.raises(ConfigError, match="needs SLUICE_S3_STAGING_URI"):
        load_settings(REDSHIFT_ENV | {"SLUICE_REDSHIFT_LOAD_PATH": "copy"})


def test_redshift_direct_connection_refuses_unverified_tls_to_a_remote_host() -> None:
    direct = REDSHIFT_ENV | {"SLUICE_REDSHIFT_CONNECTION": "direct"}
    with pytest.raises(ConfigError, match="SLUICE_DATABASE_URL is required"):
        load_settings(direct)
    remote = "postgresql://sluice:hunter2@cluster.example.com:5439/analytics"
    ok = load_settings(direct | {"SLUICE_DATABASE_URL": remote})  # verify-full by default
    assert ok.redshift.connection.value == "direct"
    with pytest.raises(ConfigError, match="sslmode=require is invalid") as caught:
        load_settings(direct | {"SLUICE_DATABASE_URL": remote + "?sslmode=require"})
    assert "hunter2" not in str(caught.value)
    local = "postgresql://127.0.0.1:5432/test?sslmode=disable"
    assert load_settings(direct | {"SLUICE_DATABASE_URL": local}).database_url == local
