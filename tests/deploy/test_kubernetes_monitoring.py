"""deploy/kubernetes/monitoring: the ServiceMonitor (through its headless Service) and the
PodMonitor reach the workers' /metrics on the named port, and the vendored CRD schemas refuse
the mistakes the API server would silently prune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.pack import (
    K8S_MONITORING,
    K8S_OVERLAYS,
    SCHEMAS,
    assert_ok,
    kustomize,
    load_yaml,
    run,
    tool,
)

SCHEMA = {
    "servicemonitor.yaml": "prometheus-operator-servicemonitor-v1.json",
    "podmonitor.yaml": "prometheus-operator-podmonitor-v1.json",
}


def rendered(directory: Path) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in kustomize(directory)}


@pytest.fixture(scope="module")
def pods() -> dict[str, Any]:
    """The worker pods' template, as each overlay renders it (the same labels and port)."""
    templates = [
        rendered(K8S_OVERLAYS / name)["Deployment"]["spec"]["template"]
        for name in ("redshift", "postgres")
    ]
    assert templates[0]["metadata"]["labels"] == templates[1]["metadata"]["labels"]
    return templates[0]


def container_port(pods: dict[str, Any]) -> dict[str, Any]:
    (container,) = pods["spec"]["containers"]
    (port,) = container["ports"]
    return port


@pytest.mark.parametrize(("name", "schema"), sorted(SCHEMA.items()))
def test_monitors_against_vendored_schemas(name: str, schema: str) -> None:
    assert_ok(
        run(
            [
                tool("check-jsonschema"),
                "--schemafile",
                str(SCHEMAS / schema),
                str(K8S_MONITORING / name),
            ]
        )
    )


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("servicemonitor.yaml", "endpoints:", "endpoint:"),  # pruned: a monitor scraping nothing
        ("servicemonitor.yaml", "port: http", "port: 3000"),  # the port's name, a string
        ("servicemonitor.yaml", "interval: 30s", "interval: 30"),  # a duration
        ("servicemonitor.yaml", "scheme: http", "scheme: tcp"),
        ("podmonitor.yaml", "podMetricsEndpoints:", "podMetricEndpoints:"),
        ("podmonitor.yaml", "path: /metrics", "metricsPath: /metrics"),
    ],
)
def test_monitor_schemas_reject_mistakes(tmp_path: Path, name: str, old: str, new: str) -> None:
    text = (K8S_MONITORING / name).read_text()
    assert old in text
    bad = tmp_path / name
    bad.write_text(text.replace(old, new))
    result = run([tool("check-jsonschema"), "--schemafile", str(SCHEMAS / SCHEMA[name]), str(bad)])
    assert result.returncode != 0, result.stdout


def test_service_monitor_reaches_every_worker(pods: dict[str, Any]) -> None:
    objects = rendered(K8S_MONITORING)
    assert set(objects) == {"Service", "ServiceMonitor"}  # the PodMonitor is the alternative
    service, monitor = objects["Service"], objects["ServiceMonitor"]
    pod_labels = pods["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True  # unready workers matter most
    (port,) = service["spec"]["ports"]
    named = container_port(pods)
    assert (port["targetPort"], port["port"]) == (named["name"], named["containerPort"])
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == "sluice"


def test_pod_monitor_reaches_every_worker(pods: dict[str, Any]) -> None:
    monitor = load_yaml(K8S_MONITORING / "podmonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pods["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == (container_port(pods)["name"], "/metrics")
    assert monitor["metadata"]["namespace"] == "sluice"


def test_monitors_scrape_well_within_the_alert_windows() -> None:
    """The alerts look back 5 minutes or more: a 30 s interval gives them ten samples."""
    service = rendered(K8S_MONITORING)["ServiceMonitor"]["spec"]["endpoints"][0]
    pod = load_yaml(K8S_MONITORING / "podmonitor.yaml")["spec"]["podMetricsEndpoints"][0]
    for endpoint in (service, pod):
        assert endpoint["interval"] == "30s"
        assert endpoint["scrapeTimeout"] == "10s"


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_monitors_carry_the_release_label(name: str) -> None:
    """kube-prometheus-stack selects monitors by `release: <its release name>` by default."""
    labels = load_yaml(K8S_MONITORING / name)["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
