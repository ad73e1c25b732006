"""`sluice config show` says where each value came from, with the precedence of the settings."""

from __future__ import annotations

from pathlib import Path

from sluice.config import load_settings
from sluice.config_sources import setting_sources

SECRET = "s3cretPW"


def _rows(env: dict[str, str], flags: dict[str, object], config: str | None) -> dict:
    settings = load_settings(env, flags, config)
    return {r.name: r for r in setting_sources(env, flags, config, settings)}


def test_each_value_names_its_source_and_the_highest_wins(tmp_path: Path) -> None:
    toml = tmp_path / "sluice.toml"
    toml.write_text("max_messages = 5\nbatch_max_rows = 100\nreceive_concurrency = 4\n")
    env = {
        "SLUICE_SINK": "postgres",
        "SLUICE_DATABASE_URL": f"postgresql://u:{SECRET}@db:5432/events",
        "SLUICE_BATCH_MAX_ROWS": "200",
        "SLUICE_RECEIVE_CONCURRENCY": "6",
        "SQS_WAIT_TIME_SECONDS": "  ",  # blank: ignored, as load_settings ignores it
    }
    rows = _rows(env, {"receive_concurrency": "9", "port": None}, str(toml))
    assert rows["max_messages"].source.text() == f"file {toml}"
    assert rows["batch_max_rows"].value == "200"
    assert rows["batch_max_rows"].source.text() == "environment SLUICE_BATCH_MAX_ROWS"
    assert rows["receive_concurrency"].value == "9"
    assert rows["receive_concurrency"].source.text() == "flag --receive-concurrency"
    assert rows["wait_time_seconds"].source.text() == "default"
    assert rows["port"].source.kind == "default"
    assert rows["worker_id"].source.kind == "derived"
    assert rows["max_held_bytes"].source.kind == "derived"
    assert rows["queue_url"].value is None
    url = rows["database_url"]
    assert url.value == "postgresql://u:***@db:5432/events"
    assert SECRET not in str(url.document())
    assert url.document() == {
        "value": "postgresql://u:***@db:5432/events",
        "variable": "SLUICE_DATABASE_URL",
        "source": "environment",
        "from": "SLUICE_DATABASE_URL",
    }


def test_the_config_file_from_the_environment_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "from-env.toml"
    toml.write_text("[sluice]\nport = 9100\n")
    rows = _rows({"SLUICE_CONFIG": str(toml)}, {}, None)
    assert rows["port"].source.text() == f"file {toml}"


def test_redshift_flush_defaults_show_as_derived() -> None:
    env = {
        "SLUICE_SINK": "redshift",
        "REDSHIFT_CLUSTER_IDENTIFIER": "events",
        "REDSHIFT_DATABASE": "analytics",
        "REDSHIFT_DB_USER": "sluice",
    }
    rows = _rows(env, {}, None)
    assert rows["batch_max_rows"].source.kind == "derived"  # 20,000 for Redshift, 5,000 else
    assert rows["redshift_database"].source.text() == "environment REDSHIFT_DATABASE"
