"""deploy/compose.yaml: the Compose Specification schema, Sluice's own settings parser, and the
wiring between services (emulator queue URLs, graceful stop, mounted files)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluice.config import SinkKind, load_settings
from tests.deploy.pack import (
    COMPOSE,
    DEPLOY,
    REPO,
    assert_ok,
    load_yaml,
    run,
    tool,
    unknown_settings,
)

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def sluice_env(service: dict[str, Any]) -> dict[str, str]:
    """The container's environment with nothing set in the shell: a key with no value is passed
    through from the shell when set there, so here it is absent."""
    return {
        name: interpolate(str(value))
        for name, value in service["environment"].items()
        if value is not None
    }


def test_compose_spec_schema() -> None:
    assert_ok(
        run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    )


def test_compose_spec_schema_rejects_a_misspelt_key(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:"))
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert result.returncode != 0
    assert "stop_grace_periode" in result.stdout


@pytest.mark.parametrize(
    ("name", "sink"),
    [
        ("sluice", SinkKind.POSTGRES),
        ("init-db", SinkKind.POSTGRES),
        ("loadgen", SinkKind.POSTGRES),
        ("sluice-redshift", SinkKind.REDSHIFT),
        ("init-db-redshift", SinkKind.REDSHIFT),
    ],
)
def test_sluice_services_use_real_settings(
    compose: dict[str, Any], name: str, sink: SinkKind
) -> None:
    env = sluice_env(compose["services"][name])
    assert unknown_settings(env) == []
    settings = load_settings(env)  # raises ConfigError on a bad value
    assert settings.sink is sink
    assert settings.port == 3000
    assert settings.enable_consumer is True


def test_redshift_profile_uses_the_old_variables_from_the_shell(compose: dict[str, Any]) -> None:
    """The profile is the old deployment's variables plus the S3 staging settings, each taken
    from the shell: with them set, the worker is a Redshift Data API worker that stages in S3."""
    service = compose["services"]["sluice-redshift"]
    assert service["profiles"] == ["redshift"]
    shell = {
        "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/210987654321/events",
        "SLUICE_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/210987654321/events-dlq",
        "AWS_REGION": "eu-west-1",
        "REDSHIFT_CLUSTER_IDENTIFIER": "warehouse",
        "REDSHIFT_DATABASE": "prod",
        "REDSHIFT_DB_USER": "loader",
        "SLUICE_S3_STAGING_URI": "s3://their-bucket/staging",
        "SLUICE_REDSHIFT_IAM_ROLE": "arn:aws:iam::210987654321:role/copy",
    }
    env = {}
    for name, value in service["environment"].items():
        if value is None:
            assert name.startswith("AWS_") and name in PASSED_THROUGH
            continue
        env[name] = _INTERPOLATION.sub(lambda m: shell.get(m.group(1), m.group(2) or ""), value)
    for name, value in shell.items():
        assert env[name] == value, name
    settings = load_settings(env)
    assert settings.sink is SinkKind.REDSHIFT and settings.redshift.copy
    assert "AWS_ENDPOINT_URL_SQS" not in env and "SLUICE_DATABASE_URL" not in env
    limits = service["deploy"]["resources"]
    assert limits["limits"]["memory"] == "1G" and limits["reservations"]["memory"] == "768M"
    needs = service["depends_on"]
    assert needs == {"init-db-redshift": {"condition": "service_completed_successfully"}}


# The AWS SDK's own credential variables, passed through from the shell (never given a value).
PASSED_THROUGH = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_queue_urls_are_the_emulators(compose: dict[str, Any]) -> None:
    """fauxqs looks queues up by their exact URL, built from FAUXQS_HOST, port and region."""
    emulator = compose["services"]["fauxqs"]
    env = emulator["environment"]
    init = json.loads((DEPLOY / "fauxqs" / "init.json").read_text())
    names = {queue["name"] for queue in init["queues"]}
    prefix = (
        f"http://sqs.{env['FAUXQS_DEFAULT_REGION']}.{env['FAUXQS_HOST']}:{env['FAUXQS_PORT']}"
        "/000000000000/"
    )
    settings = load_settings(sluice_env(compose["services"]["sluice"]))
    assert settings.queue_url is not None and settings.dlq_url is not None
    assert settings.queue_url.removeprefix(prefix) in names
    assert settings.dlq_url.removeprefix(prefix) in names
    assert settings.queue_url != settings.dlq_url
    assert settings.sqs_endpoint_url == f"http://fauxqs:{env['FAUXQS_PORT']}"
    assert settings.aws_region == env["FAUXQS_DEFAULT_REGION"]


def test_emulator_is_the_pinned_fauxqs(compose: dict[str, Any]) -> None:
    emulator = compose["services"]["fauxqs"]
    assert emulator["image"].startswith("node:20")
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["fauxqs"]
    assert f"fauxqs@{pinned}" in emulator["command"]


def test_workers_stop_gracefully_before_the_kill(compose: dict[str, Any]) -> None:
    service = compose["services"]["sluice"]
    grace = load_settings(sluice_env(service)).shutdown_grace
    assert duration_seconds(service["stop_grace_period"]) > grace + 5
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_workers_are_replicated_limited_and_restarted(compose: dict[str, Any]) -> None:
    deploy = compose["services"]["sluice"]["deploy"]
    assert deploy["replicas"] >= 2
    assert deploy["restart_policy"]["condition"] in {"on-failure", "any"}
    assert deploy["resources"]["limits"]["memory"]
    assert float(deploy["resources"]["limits"]["cpus"]) >= 1


def test_workers_start_after_the_table_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["init-db"]["command"] == ["init-db"]
    needs = services["sluice"]["depends_on"]
    assert needs["init-db"]["condition"] == "service_completed_successfully"
    assert needs["fauxqs"]["condition"] == "service_healthy"
    assert needs["postgres"]["condition"] == "service_healthy"
    assert services["init-db"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_bind_mount_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
    build = compose["services"]["sluice"]["build"]
    context = COMPOSE.parent / build["context"]
    assert (context / build["dockerfile"]).is_file()
