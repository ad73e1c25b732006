"""Helpers for the deployment-pack tests: paths, the validators, YAML with CloudFormation tags,
and the names of the Prometheus series Sluice exports.

Every validator is a real tool run offline. A missing tool fails the test that needs it (never a
skip): the Python ones come from requirements.lock (`make setup`), promtool from Debian's
`prometheus` package (`make services` runs scripts/ensure-tools.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sluice.config import SPECS
from sluice.errors import FailureReason
from sluice.model import CircuitState
from sluice.observe.metrics import QueueDepthMonitor, WorkerMetrics
from sluice.observe.stats import PipelineView, WorkerCounters
from sluice.sources.base import QueueDepth
from sluice.sources.memory import MemoryQueue

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ECS_TEMPLATE = DEPLOY / "ecs" / "sluice.yaml"
K8S = DEPLOY / "kubernetes"
K8S_BASE = K8S / "base"
K8S_OVERLAYS = K8S / "overlays"
K8S_MONITORING = K8S / "monitoring"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sluice.json"
SCHEMAS = DEPLOY / "schemas"

_INSTALL_HINTS = {
    "promtool": "run `make services` (scripts/ensure-tools.sh installs Debian's `prometheus`)",
    # kubectl's built-in kustomize renders the overlays. It comes with the machine image (the
    # google-cloud-cli `kubectl` package, kustomize v5.5); Debian's kubernetes-client is 1.20,
    # whose kustomize v2 lacks `labels` and inline patches, and no PyPI wheel ships one.
    "kubectl": "install kubectl 1.27 or newer (its `kubectl kustomize` renders the overlays)",
}


def tool(name: str) -> str:
    """Path of a validator: the venv's bin first, then PATH. Missing is a failure."""
    venv_bin = Path(sys.executable).parent
    search = os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        hint = _INSTALL_HINTS.get(name, "run `make setup` (it is in requirements.lock)")
        pytest.fail(f"validator `{name}` is not installed: {hint}")
    return found


def run(
    args: list[str], *, cwd: Path = REPO, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{output}"
    return output


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# --- CloudFormation YAML: short-form intrinsic functions as their long-form dicts -----------


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_cfn(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass: no arbitrary objects


# --- Sluice's settings ----------------------------------------------------------------------


def setting_names() -> set[str]:
    """Every environment variable Sluice reads (docs/configuration.md)."""
    return {spec.env for spec in SPECS}


def unknown_settings(names: Iterable[str]) -> list[str]:
    known = setting_names()
    return sorted(n for n in names if n not in known)


# --- Prometheus ------------------------------------------------------------------------------


@cache
def exported_series_names() -> frozenset[str]:
    """Sample names a worker's /metrics exposes, from a real WorkerMetrics with every family
    populated (queue and DLQ depths known, a load observed)."""
    counters = WorkerCounters(received=10, inserted=8, deleted=9)
    counters.dead_lettered[FailureReason.INVALID_JSON] = 1

    def view() -> PipelineView:
        return PipelineView(
            counters=counters, held=3, oldest_sent_ms=1_000, circuit=CircuitState.CLOSED
        )

    source = MemoryQueue(clock=lambda: 0.0)
    depths = QueueDepthMonitor(source=source, dlq=source, interval=30.0)
    depths.queue = QueueDepth(visible=5, in_flight=2, delayed=1)
    depths.dead_letters = QueueDepth(visible=1, in_flight=0, delayed=0)
    metrics = WorkerMetrics("w-test", view, depths, wall_clock=lambda: 2.0)
    metrics.observe_load(rows=100, seconds=0.2)
    text = metrics.render().decode()
    return frozenset(
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    )


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.:$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels removed)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


_GRAFANA_VARIABLES = re.compile(r"\$\{?(__\w+|\w+)(?::\w+)?\}?")


def grafana_to_promql(expr: str) -> str:
    """A Grafana query made plain PromQL: interval variables become 5m, the rest `.*`."""
    return _GRAFANA_VARIABLES.sub(lambda m: "5m" if m.group(1).endswith("interval") else ".*", expr)


def check_promql_parses(exprs: Mapping[str, str], tmp_path: Path) -> None:
    """Have promtool parse each expression, as the `expr` of a recording rule."""
    rules = [
        {"record": f"pack:check:{i}", "expr": expr, "labels": {"source": where}}
        for i, (where, expr) in enumerate(exprs.items())
    ]
    path = tmp_path / "parse-check.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse-check", "rules": rules}]}))
    assert_ok(run([tool("promtool"), "check", "rules", str(path)]))


# --- kustomize ---------------------------------------------------------------------------


@cache
def _kustomize_output(directory: str) -> str:
    result = run([tool("kubectl"), "kustomize", directory])
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return result.stdout


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIR` renders (real kustomize, offline)."""
    return [doc for doc in yaml.safe_load_all(_kustomize_output(str(directory))) if doc]
