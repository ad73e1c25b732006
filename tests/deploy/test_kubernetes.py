"""deploy/kubernetes: core kinds against the OpenAPI schemas kubernetes-validate bundles (strict),
KEDA's kinds against the vendored schemas in deploy/schemas, and the invariants between files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.config import SinkKind, load_settings
from tests.deploy.pack import (
    ECS_TEMPLATE,
    K8S,
    SCHEMAS,
    assert_ok,
    load_cfn,
    load_yaml,
    run,
    tool,
    unknown_settings,
)

# The oldest Kubernetes minor the manifests claim (PodDisruptionBudget's unhealthyPodEvictionPolicy
# is GA from 1.31) and a recent one; both schemas ship inside the kubernetes-validate wheel.
K8S_VERSIONS = ("1.31.0", "1.35.0")
CORE = (
    "serviceaccount.yaml",
    "configmap.yaml",
    "deployment.yaml",
    "pdb.yaml",
    "hpa-alternative.yaml",
)
KEDA = {
    "keda-scaledobject.yaml": "keda-scaledobject-v1alpha1.json",
    "keda-triggerauthentication.yaml": "keda-triggerauthentication-v1alpha1.json",
}


def manifest(name: str) -> dict[str, Any]:
    return load_yaml(K8S / name)


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return manifest("deployment.yaml")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    return manifest("configmap.yaml")["data"]


def test_every_manifest_is_covered() -> None:
    files = {p.name for p in K8S.glob("*.yaml")}
    not_manifests = {"kustomization.yaml", "prometheus-adapter-values.yaml"}
    assert files - not_manifests == set(CORE) | set(KEDA)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifests_against_kubernetes_schemas(version: str) -> None:
    paths = [str(K8S / name) for name in CORE]
    output = assert_ok(run([tool("kubernetes-validate"), "--strict", "-k", version, *paths]))
    # kubernetes-validate only warns (exit 0) for a kind it has no schema for: insist on a pass
    for name in CORE:
        assert f"{name} passed" in output, output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "deployment.yaml"
    text = (K8S / "deployment.yaml").read_text()
    bad.write_text(text.replace("terminationGracePeriodSeconds:", "terminationGracePeriod:"))
    result = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSIONS[0], str(bad)])
    assert result.returncode != 0, result.stdout + result.stderr


def test_vendored_schemas_are_valid_json_schemas() -> None:
    schemas = [str(SCHEMAS / name) for name in KEDA.values()]
    assert_ok(run([tool("check-jsonschema"), "--check-metaschema", *schemas]))


@pytest.mark.parametrize(("name", "schema"), sorted(KEDA.items()))
def test_keda_manifests_against_vendored_schemas(name: str, schema: str) -> None:
    assert_ok(
        run([tool("check-jsonschema"), "--schemafile", str(SCHEMAS / schema), str(K8S / name)])
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queueLength:", "queueLenght:"),  # a metadata key the scaler would ignore
        ("minReplicaCount:", "minReplicas:"),  # an HPA field name, pruned by the API server
        ('queueLength: "300000"', "queueLength: 300000"),  # KEDA metadata values are strings
    ],
)
def test_keda_schema_rejects_mistakes(tmp_path: Path, old: str, new: str) -> None:
    text = (K8S / "keda-scaledobject.yaml").read_text()
    assert old in text
    bad = tmp_path / "scaledobject.yaml"
    bad.write_text(text.replace(old, new))
    schema = SCHEMAS / KEDA["keda-scaledobject.yaml"]
    result = run([tool("check-jsonschema"), "--schemafile", str(schema), str(bad)])
    assert result.returncode != 0, result.stdout


def test_kustomization_lists_the_keda_variant_only() -> None:
    kustomization = manifest("kustomization.yaml")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert set(resources) == (set(CORE) - {"hpa-alternative.yaml"}) | set(KEDA)
    images = {image["name"] for image in kustomization["images"]}
    containers = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert {c["image"].rsplit(":", 1)[0] for c in containers} <= images


def test_configmap_and_secret_make_valid_settings(
    config: dict[str, str], container: dict[str, Any]
) -> None:
    env_names = {e["name"] for e in container["env"]}
    assert unknown_settings([*config, *env_names, "SLUICE_DATABASE_URL"]) == []
    refs = [source for source in container["envFrom"] if "secretRef" in source]
    assert refs and refs[0]["secretRef"]["name"] == "sluice-secrets"
    env = {**config, "WORKER_ID": "sluice-5d9c7b7f4-x2x7q"}
    env["SLUICE_DATABASE_URL"] = "postgresql://sluice:secret@db.internal:5432/events"
    settings = load_settings(env)
    assert settings.sink is SinkKind.POSTGRES
    assert settings.enable_consumer is True


def test_worker_id_is_the_pod_name(container: dict[str, Any]) -> None:
    (worker_id,) = [e for e in container["env"] if e["name"] == "WORKER_ID"]
    assert worker_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_probes_and_scrape_annotations_use_port(
    deployment: dict[str, Any], container: dict[str, Any], config: dict[str, str]
) -> None:
    port = int(config["PORT"])
    (named,) = container["ports"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": named["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": named["name"]}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_grace_period_outlasts_the_shutdown_grace(
    deployment: dict[str, Any], config: dict[str, str]
) -> None:
    grace = float(config["SLUICE_SHUTDOWN_GRACE"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 10


def test_pod_runs_locked_down(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path
    assert container["resources"]["requests"]["cpu"] == "1"
    assert "memory" in container["resources"]["limits"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


def test_selectors_match_the_pods(deployment: dict[str, Any]) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        manifest("pdb.yaml")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    service_account = manifest("serviceaccount.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]
    assert "eks.amazonaws.com/role-arn" in service_account["metadata"]["annotations"]


def test_keda_and_hpa_agree_with_each_other_and_with_ecs(config: dict[str, str]) -> None:
    scaled = manifest("keda-scaledobject.yaml")["spec"]
    hpa = manifest("hpa-alternative.yaml")["spec"]
    deployment_name = manifest("deployment.yaml")["metadata"]["name"]
    assert scaled["scaleTargetRef"]["name"] == hpa["scaleTargetRef"]["name"] == deployment_name
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["queueURL"] == config["SQS_QUEUE_URL"]
    assert trigger["metadata"]["awsRegion"] == config["AWS_REGION"]
    authentication = manifest("keda-triggerauthentication.yaml")
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    (metric,) = hpa["metrics"]
    ecs = load_cfn(ECS_TEMPLATE)["Parameters"]
    target = int(trigger["metadata"]["queueLength"])
    assert target == int(metric["external"]["target"]["averageValue"])
    assert target == ecs["TargetBacklogPerTask"]["Default"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        ecs["MinTasks"]["Default"],
        ecs["MaxTasks"]["Default"],
    )
