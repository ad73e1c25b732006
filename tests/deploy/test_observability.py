"""Prometheus rules and config (promtool), the Grafana dashboard and its provisioning, and the
metric names all of them use: each must be one a real worker's /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.pack import (
    COMPOSE,
    DASHBOARD,
    DEPLOY,
    K8S,
    PROMETHEUS,
    REPO,
    assert_ok,
    check_promql_parses,
    exported_series_names,
    grafana_to_promql,
    load_yaml,
    promql_metric_names,
    run,
    tool,
)

ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
REQUIRED_PANELS = {
    "Queue depth",
    "Processed per hour",
    "Per-worker rate",
    "Failure rate",
    "Oldest message age",
    "DLQ depth",
    "Workers up",
    "Load seconds p99",
    "Circuit state",
}
REQUIRED_ALERTS = {
    "SluiceQueueDepthHigh",
    "SluiceOldestMessageTooOld",
    "SluiceDeadLetters",
    "SluiceBacklogNotDraining",
    "SluiceCircuitOpen",
    "SluiceNoWorkerUp",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    queries = {
        f"{panel['title']}/{target['refId']}": target["expr"]
        for panel in panels(dashboard)
        for target in panel["targets"]
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(selector, label): the selector is the PromQL part
            selector = re.sub(r"^label_values\((.+),\s*\w+\)$", r"\1", variable["definition"])
            queries[f"${variable['name']}"] = selector
    return queries


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


# --- promtool --------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    output = assert_ok(run([tool("promtool"), "check", "rules", str(ALERTS)]))
    assert f"{len(alert_rules())} rules found" in output


def test_promtool_unit_tests() -> None:
    output = assert_ok(run([tool("promtool"), "test", "rules", str(ALERT_TESTS)]))
    assert "SUCCESS" in output


def test_promtool_unit_tests_catch_a_summed_queue_gauge(tmp_path: Path) -> None:
    """The tests are not vacuous: summing the gauge every worker reports is caught."""
    for path in (ALERTS, ALERT_TESTS):
        (tmp_path / path.name).write_text(path.read_text())
    rules = tmp_path / ALERTS.name
    text = rules.read_text()
    bad = 'sum(sluice_queue_messages{state="visible"}) > 500000'
    rules.write_text(text.replace('max(sluice_queue_messages{state="visible"}) > 500000', bad))
    assert bad in rules.read_text()
    result = run([tool("promtool"), "test", "rules", str(tmp_path / ALERT_TESTS.name)])
    assert result.returncode != 0


def test_promtool_check_config() -> None:
    # also loads the rule file the config names, relative to the config
    output = assert_ok(
        run([tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")])
    )
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_silent() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names == REQUIRED_ALERTS
    fired: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fired == names, f"never shown firing: {names - fired}"
    assert silent == names, f"never shown silent: {names - silent}"


def test_alert_thresholds_match_the_ops_guide() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert exprs["SluiceQueueDepthHigh"].endswith("> 500000")
    assert exprs["SluiceOldestMessageTooOld"].endswith("> 300")
    assert exprs["SluiceDeadLetters"].endswith("> 0")


def test_queue_gauges_are_never_summed() -> None:
    """Every worker reports the same queue's depth: sum() would multiply it by the workers."""
    exprs = [rule["expr"] for rule in alert_rules()]
    exprs += list(dashboard_queries(json.loads(DASHBOARD.read_text())).values())
    for expr in exprs:
        compact = expr.replace(" ", "")
        for gauge in ("sluice_queue_messages", "sluice_dlq_messages"):
            assert f"sum({gauge}" not in compact, expr
            assert f"sumby(state)({gauge}" not in compact, expr


# --- Grafana ---------------------------------------------------------------------------------


def test_dashboard_has_the_required_panels(dashboard: dict[str, Any]) -> None:
    titles = {panel["title"] for panel in panels(dashboard)}
    assert titles >= REQUIRED_PANELS, f"missing: {REQUIRED_PANELS - titles}"
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_layout_is_sound(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "sluice"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_dashboard_uses_its_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard):
        refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(ref == variable for ref in refs), panel["title"]


def test_dashboard_queries_parse_as_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    queries = {
        where: grafana_to_promql(expr) for where, expr in dashboard_queries(dashboard).items()
    }
    check_promql_parses(queries, tmp_path)


def test_grafana_provisioning_matches_compose() -> None:
    compose = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in compose["volumes"] if volume.startswith("."))
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = load_yaml(provisioning / "dashboards" / "sluice.yaml")["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


# --- metric names ----------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(sluice_load_seconds_bucket{worker=~"a|b"}'
        "[5m]))) / on() group_left count(up == 1) and absent(sluice_dlq_messages) > 1e3"
    )
    assert promql_metric_names(expr) == {"sluice_load_seconds_bucket", "up", "sluice_dlq_messages"}


WORKER_FAMILIES = (
    "sluice_messages_total",
    "sluice_dead_letters_total",
    "sluice_errors_total",
    "sluice_batch_rows",
    "sluice_load_seconds",
    "sluice_receives_total",
    "sluice_messages_held",
    "sluice_message_bytes_held",
    "sluice_oldest_message_age_seconds",
    "sluice_circuit_state",
    "sluice_queue_messages",
    "sluice_dlq_messages",
)


def test_every_documented_worker_family_is_exported() -> None:
    """The fake pipeline behind exported_series_names() really renders every family of
    docs/metrics.md, so a name missing from it is missing from the code."""
    documented = (REPO / "docs" / "metrics.md").read_text()
    exported = exported_series_names()
    for name in WORKER_FAMILIES:
        assert f"`{name}`" in documented, name
        assert name in exported or f"{name}_bucket" in exported, name


def test_dashboard_metrics_are_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_series_names()
    for where, expr in dashboard_queries(dashboard).items():
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= exported, f"{where}: not exported: {names - exported}"


def test_alert_metrics_are_exported() -> None:
    exported = exported_series_names()
    for rule in alert_rules():
        names = promql_metric_names(rule["expr"])
        assert names and names <= exported, f"{rule['alert']}: not exported: {names - exported}"


def test_hpa_external_metric_is_exported() -> None:
    """The HPA alternative's External metric and the prometheus-adapter rule that serves it."""
    exported = exported_series_names()
    hpa = load_yaml(K8S / "hpa-alternative.yaml")
    (metric,) = hpa["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    assert name in exported
    (rule,) = load_yaml(K8S / "prometheus-adapter-values.yaml")["rules"]["external"]
    assert rule["name"]["as"] == name
    assert promql_metric_names(rule["seriesQuery"]) == {name}
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", name)
        .replace("<<.LabelMatchers>>", 'state="visible",namespace="sluice"')
        .replace("<<.GroupBy>>", "state")
    )
    assert promql_metric_names(query) == {name}
    assert query.startswith("max("), "every worker reports the queue gauge: max, not sum"
