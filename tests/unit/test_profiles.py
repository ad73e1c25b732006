"""Warehouse profiles: what each warehouse allows and wants is data, read where it matters,
and the Redshift settings are one nested object whose variables keep their names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import SPECS, Settings, load_settings
from sluice.config_sink import SinkKind
from sluice.config_text import describe, settings_environment
from sluice.errors import ConfigError
from sluice.runtime.worker import sink_mapping
from sluice.sinks.profiles import PROFILES
from sluice.sinks.redshift.settings import REDSHIFT_DEFAULTS, RedshiftSettings
from sluice.sinks.sql import DUCKDB, POSTGRES, REDSHIFT, REDSHIFT_MAX_VARCHAR

SRC = Path(__file__).resolve().parents[2] / "src" / "sluice"
PG = "postgresql://u:p@db.internal/w"
REDSHIFT_ENV = {
    "SLUICE_SINK": "redshift",
    "REDSHIFT_CLUSTER_IDENTIFIER": "events-cluster",
    "REDSHIFT_DATABASE": "analytics",
    "REDSHIFT_DB_USER": "sluice",
}
# Where the kind may still be named: where it is data (parsed, inferred, described), and
# the benchmark's choice of a throwaway file when no warehouse was chosen.
KIND_IS_DATA = {"config_sink.py", "sinks/profiles.py", "tools/benchmark.py"}


def test_every_kind_has_a_profile_of_its_own() -> None:
    assert set(PROFILES) == set(SinkKind)
    assert all(profile.kind is kind for kind, profile in PROFILES.items())
    dialects = {kind: profile.dialect for kind, profile in PROFILES.items()}
    assert dialects == {
        SinkKind.DUCKDB: DUCKDB,
        SinkKind.POSTGRES: POSTGRES,
        SinkKind.REDSHIFT: REDSHIFT,
    }


def test_no_branch_on_the_warehouse_kind_outside_its_profile() -> None:
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in KIND_IS_DATA
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"SinkKind\.[A-Z]", line)
    ]
    assert found == []


def test_the_writer_limit_bounds_loads_and_refuses_a_supervisor() -> None:
    duckdb = load_settings({"SLUICE_SINK": "duckdb", "SLUICE_LOAD_CONCURRENCY": "4"})
    assert PROFILES[SinkKind.DUCKDB].max_writers == 1
    assert duckdb.effective_load_concurrency == 1
    postgres = load_settings({"SLUICE_DATABASE_URL": PG, "SLUICE_LOAD_CONCURRENCY": "4"})
    assert postgres.effective_load_concurrency == 4
    with pytest.raises(ConfigError, match="SLUICE_SINK=duckdb allows one writer process"):
        load_settings({"SLUICE_SINK": "duckdb", "SLUICE_PROCESSES": "2"})
    assert load_settings({"SLUICE_DATABASE_URL": PG, "SLUICE_PROCESSES": "2"}).processes == 2


def test_only_redshift_bounds_text_in_the_mapping() -> None:
    redshift = sink_mapping(load_settings(REDSHIFT_ENV))
    postgres = sink_mapping(load_settings({"SLUICE_DATABASE_URL": PG}))
    limits = {c.max_length for c in redshift.load_columns if c.max_length is not None}
    assert limits and max(limits) <= REDSHIFT_MAX_VARCHAR
    assert PROFILES[SinkKind.REDSHIFT].text_limit == REDSHIFT_MAX_VARCHAR
    assert postgres == sink_mapping(Settings())  # no sink chosen: no limit either


@given(visibility=st.integers(2, 43_200))
def test_redshift_flush_defaults_stay_inside_any_visibility_budget(visibility: int) -> None:
    chosen = PROFILES[SinkKind.REDSHIFT].defaults.for_visibility(visibility)
    assert chosen == REDSHIFT_DEFAULTS | {"batch_max_age": min(30.0, visibility / 4)}
    assert float(str(chosen["batch_max_age"])) * 2 < visibility
    assert PROFILES[SinkKind.POSTGRES].defaults.for_visibility(visibility) == {}


def test_redshift_settings_are_one_nested_object_under_the_old_names(tmp_path: Path) -> None:
    staged = REDSHIFT_ENV | {
        "SLUICE_S3_STAGING_URI": "s3://bucket/sluice",
        "SLUICE_REDSHIFT_IAM_ROLE": "arn:aws:iam::123456789012:role/copy",
        "AWS_ENDPOINT_URL_REDSHIFT_DATA": "http://127.0.0.1:9",
    }
    s = load_settings(staged)
    assert isinstance(s.redshift, RedshiftSettings)
    assert (s.redshift.database, s.redshift.db_user) == ("analytics", "sluice")
    assert s.redshift.copy and s.redshift.data_endpoint_url == "http://127.0.0.1:9"
    # The environment round trip, `config show` and the flags keep the flat spellings.
    assert settings_environment(s).items() >= staged.items()
    rows = {name: (env, value) for name, env, value in describe(s)}
    assert rows["redshift_database"] == ("REDSHIFT_DATABASE", "analytics")
    assert rows["s3_staging_uri"] == ("SLUICE_S3_STAGING_URI", "s3://bucket/sluice")
    assert {spec.flag for spec in SPECS} >= {"--redshift-database", "--s3-staging-uri"}
    flagged = load_settings(REDSHIFT_ENV, {"redshift_db_user": "loader"})
    assert flagged.redshift.db_user == "loader"
    toml = tmp_path / "sluice.toml"
    toml.write_text('redshift_workgroup = "wg"\nredshift_statement_timeout = 60\n')
    filed = load_settings({"SLUICE_SINK": "redshift", "REDSHIFT_DATABASE": "dev"}, {}, str(toml))
    assert (filed.redshift.workgroup, filed.redshift.statement_timeout) == ("wg", 60.0)
