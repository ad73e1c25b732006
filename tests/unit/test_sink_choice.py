"""SLUICE_SINK not given: Redshift or PostgreSQL inferred from what can mean only them, and
never an embedded DuckDB file (which a container loses, after SQS deleted its messages)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import Settings, SinkKind, load_settings
from sluice.config_sink import require_sink
from sluice.config_text import describe, settings_environment
from sluice.errors import ConfigError

# What the deployment Sluice replaces sets, and nothing of Sluice's own.
OLD_DEPLOYMENT = {
    "WORKER_ID": "w-test",
    "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/events",
    "REDSHIFT_CLUSTER_IDENTIFIER": "events-cluster",
    "REDSHIFT_DATABASE": "analytics",
    "REDSHIFT_DB_USER": "sluice",
    "REDSHIFT_TABLE_NAME": "appsflyer_events",
    "ENABLE_SQS_CONSUMER": "true",
    "PORT": "3000",
}
PG = "postgresql://sluice@db.internal:5432/events"


def refusal(settings: Settings) -> str:
    with pytest.raises(ConfigError) as info:
        require_sink(settings)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_old_deployments_variables_alone_mean_redshift() -> None:
    s = load_settings(OLD_DEPLOYMENT)
    assert s.sink is SinkKind.REDSHIFT
    assert s.sink_inferred_from == "REDSHIFT_CLUSTER_IDENTIFIER"
    assert require_sink(s) is SinkKind.REDSHIFT
    assert s.batch_max_rows == 20_000  # Redshift's defaults follow the inferred sink too


def test_a_serverless_workgroup_means_redshift() -> None:
    s = load_settings(
        {"SLUICE_REDSHIFT_WORKGROUP": "wg", "REDSHIFT_DATABASE": "dev", "WORKER_ID": "w"}
    )
    assert (s.sink, s.sink_inferred_from) == (SinkKind.REDSHIFT, "SLUICE_REDSHIFT_WORKGROUP")


def test_a_database_url_alone_means_postgres() -> None:
    s = load_settings({"SLUICE_DATABASE_URL": PG, "WORKER_ID": "w"})
    assert (s.sink, s.sink_inferred_from) == (SinkKind.POSTGRES, "SLUICE_DATABASE_URL")


def test_nothing_to_infer_from_refuses_with_the_choices_on_one_line() -> None:
    s = load_settings({"WORKER_ID": "w", "SQS_QUEUE_URL": OLD_DEPLOYMENT["SQS_QUEUE_URL"]})
    assert s.sink is None  # loading settings is fine (`config show`); choosing a sink is not
    message = refusal(s)
    for choice in ("SLUICE_SINK=redshift", "SLUICE_SINK=postgres", "SLUICE_SINK=duckdb"):
        assert choice in message
    assert "REDSHIFT_CLUSTER_IDENTIFIER" in message and "SLUICE_DATABASE_URL" in message


def test_redshift_settings_and_a_database_url_together_are_ambiguous() -> None:
    s = load_settings(OLD_DEPLOYMENT | {"SLUICE_DATABASE_URL": PG})
    assert s.sink is None
    message = refusal(s)
    assert "REDSHIFT_CLUSTER_IDENTIFIER and SLUICE_DATABASE_URL" in message
    assert "SLUICE_SINK=redshift or SLUICE_SINK=postgres" in message
    assert "db.internal" not in message  # the DSN is never quoted


def test_a_direct_redshift_connection_makes_the_url_redshifts_own() -> None:
    url = "postgresql://sluice@127.0.0.1:5439/analytics"
    direct = {"SLUICE_REDSHIFT_CONNECTION": "direct", "SLUICE_DATABASE_URL": url}
    assert load_settings(OLD_DEPLOYMENT | direct).sink is SinkKind.REDSHIFT
    assert load_settings({"WORKER_ID": "w"} | direct).sink is SinkKind.REDSHIFT


def test_an_explicit_sink_wins_and_is_not_inferred() -> None:
    for sink in SinkKind:
        extra = {"SLUICE_DATABASE_URL": PG} if sink is SinkKind.POSTGRES else {}
        s = load_settings(OLD_DEPLOYMENT | extra | {"SLUICE_SINK": sink.value})
        assert (s.sink, s.sink_inferred_from) == (sink, None)
    ambiguous = OLD_DEPLOYMENT | {"SLUICE_DATABASE_URL": PG}
    assert load_settings(ambiguous, {"sink": "postgres"}).sink is SinkKind.POSTGRES


def test_an_incomplete_inferred_redshift_says_it_was_inferred() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"WORKER_ID": "w", "REDSHIFT_CLUSTER_IDENTIFIER": "c"})
    assert str(info.value) == (
        "REDSHIFT_DATABASE is required when SLUICE_SINK=redshift "
        "(SLUICE_SINK=redshift inferred from REDSHIFT_CLUSTER_IDENTIFIER)"
    )


def test_config_show_says_which_sink_was_inferred_and_works_without_one() -> None:
    rows = {name: value for name, _, value in describe(load_settings(OLD_DEPLOYMENT))}
    assert rows["sink"] == "redshift (inferred from REDSHIFT_CLUSTER_IDENTIFIER)"
    rows = {name: value for name, _, value in describe(load_settings({"WORKER_ID": "w"}))}
    assert rows["sink"] == ""


def test_a_child_process_gets_the_inferred_sink_spelled_out() -> None:
    env = settings_environment(load_settings(OLD_DEPLOYMENT))
    assert env["SLUICE_SINK"] == "redshift"
    assert load_settings(env).sink is SinkKind.REDSHIFT
    assert "SLUICE_SINK" not in settings_environment(load_settings({"WORKER_ID": "w"}))


def test_building_a_sink_without_a_choice_refuses_rather_than_opening_duckdb() -> None:
    from sluice.mapping import load_mapping
    from sluice.runtime.worker import build_sink

    s = load_settings({"WORKER_ID": "w"})
    with pytest.raises(ConfigError, match="no warehouse chosen"):
        build_sink(s, load_mapping(None, s.table_name))


@given(
    cluster=st.booleans(),
    workgroup=st.booleans(),
    direct=st.booleans(),
    url=st.booleans(),
    database=st.booleans(),
)
def test_inference_never_chooses_duckdb(
    cluster: bool, workgroup: bool, direct: bool, url: bool, database: bool
) -> None:
    env = {"WORKER_ID": "w"}
    if cluster:
        env |= {"REDSHIFT_CLUSTER_IDENTIFIER": "c", "REDSHIFT_DB_USER": "u"}
    if workgroup:
        env["SLUICE_REDSHIFT_WORKGROUP"] = "wg"
    if direct:
        env["SLUICE_REDSHIFT_CONNECTION"] = "direct"
    if url:
        env["SLUICE_DATABASE_URL"] = "postgresql://u@127.0.0.1:5432/d"
    if database:
        env["REDSHIFT_DATABASE"] = "dev"
    try:
        s = load_settings(env)
    except ConfigError as exc:
        assert "SLUICE_SINK=redshift inferred" in str(exc)  # only an incomplete Redshift
        return
    redshift = cluster or workgroup or direct
    if redshift and url and not direct:
        expected = None
    elif redshift:
        expected = SinkKind.REDSHIFT
    else:
        expected = SinkKind.POSTGRES if url else None
    assert s.sink is expected
    assert s.sink is not SinkKind.DUCKDB
    if s.sink is None:
        with pytest.raises(ConfigError):
            require_sink(s)
