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
    return {name: interpolate(str(value)) for name, value in service["environment"].items()}


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


@pytest.mark.parametrize("name", ["sluice", "init-db", "loadgen"])
def test_sluice_services_use_real_settings(compose: dict[str, Any], name: str) -> None:
    env = sluice_env(compose["services"][name])
    assert unknown_settings(env) == []
    settings = load_settings(env)  # raises ConfigError on a bad value
    assert settings.sink is SinkKind.POSTGRES
    assert settings.port == 3000
    assert settings.enable_consumer is True


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
