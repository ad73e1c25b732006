"""deploy/kubernetes: the base, the overlays as real kustomize renders them (`kubectl kustomize`),
core kinds against the OpenAPI schemas kubernetes-validate bundles (strict), KEDA's and the
Prometheus Operator's kinds against the vendored schemas in deploy/schemas, and the
invariants between files. The monitors' own wiring: test_kubernetes_monitoring.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.config import SinkKind, load_settings
from tests.deploy.pack import (
    ECS_TEMPLATE,
    K8S,
    K8S_BASE,
    K8S_MONITORING,
    K8S_OVERLAYS,
    SCHEMAS,
    assert_ok,
    kustomize,
    load_cfn,
    load_yaml,
    run,
    tool,
)

# The oldest Kubernetes minor the manifests claim (PodDisruptionBudget's unhealthyPodEvictionPolicy
# is GA from 1.31) and a recent one; both schemas ship inside the kubernetes-validate wheel.
K8S_VERSIONS = ("1.31.0", "1.35.0")
CORE = ("serviceaccount.yaml", "configmap.yaml", "deployment.yaml", "pdb.yaml")
KEDA = {
    "keda-scaledobject.yaml": "keda-scaledobject-v1alpha1.json",
    "keda-triggerauthentication.yaml": "keda-triggerauthentication-v1alpha1.json",
}
# custom resources by (apiVersion, kind): the vendored schema that validates them
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator-servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-podmonitor-v1.json",
}
RENDERED = {
    "default": K8S,
    "redshift": K8S_OVERLAYS / "redshift",
    "postgres": K8S_OVERLAYS / "postgres",
    "monitoring": K8S_MONITORING,
}
# Measured peak RSS of one worker with its sink's defaults (docs/performance.md).
PEAK_MB = {"redshift": 648, "postgres": 206}
DSN = "postgresql://sluice:secret@db.internal:5432/events"


def base(name: str) -> dict[str, Any]:
    return load_yaml(K8S_BASE / name)


def objects(target: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in kustomize(RENDERED[target])}


def pod_spec(target: str) -> dict[str, Any]:
    return objects(target)[("Deployment", "sluice")]["spec"]["template"]["spec"]


def container_of(target: str) -> dict[str, Any]:
    (only,) = pod_spec(target)["containers"]
    return only


def environment(target: str) -> dict[str, str]:
    """What the pod's environment would be: the ConfigMap, the Secret's DSN, WORKER_ID."""
    rendered = objects(target)
    env: dict[str, str] = dict(rendered[("ConfigMap", "sluice-config")]["data"])
    for source in container_of(target)["envFrom"]:
        if "secretRef" in source:
            assert source["secretRef"]["name"] == "sluice-secrets"
            env["SLUICE_DATABASE_URL"] = DSN
    env["WORKER_ID"] = "sluice-5d9c7b7f4-x2x7q"
    return env


def test_every_manifest_is_covered() -> None:
    assert {p.name for p in K8S_BASE.glob("*.yaml")} == {"kustomization.yaml", *CORE, *KEDA}
    assert {p.name for p in K8S.glob("*.yaml")} == {
        "kustomization.yaml",
        "hpa-alternative.yaml",
        "prometheus-adapter-values.yaml",
    }
    assert {p.name for p in K8S_OVERLAYS.iterdir()} == {"redshift", "postgres"}
    assert {p.name for p in K8S_MONITORING.glob("*.yaml")} == {
        "kustomization.yaml",
        "service.yaml",
        "servicemonitor.yaml",
        "podmonitor.yaml",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifests_against_kubernetes_schemas(version: str) -> None:
    paths = [str(K8S_BASE / name) for name in CORE]
    paths += [str(K8S / "hpa-alternative.yaml"), str(K8S_MONITORING / "service.yaml")]
    output = assert_ok(run([tool("kubernetes-validate"), "--strict", "-k", version, *paths]))
    # kubernetes-validate only warns (exit 0) for a kind it has no schema for: insist on a pass
    for path in paths:
        assert f"{path} passed" in output, output


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", sorted(RENDERED))
def test_every_rendered_object_validates(tmp_path: Path, target: str, version: str) -> None:
    """Each object kustomize renders, core kinds by kubernetes-validate, custom resources by
    their vendored schema; a kind neither knows fails."""
    core, custom = [], []
    for obj in kustomize(RENDERED[target]):
        key = (obj["apiVersion"], obj["kind"])
        (custom if key in CRD_SCHEMAS else core).append(obj)
    rendered = tmp_path / "core.yaml"
    rendered.write_text(yaml.safe_dump_all(core))
    output = assert_ok(run([tool("kubernetes-validate"), "--strict", "-k", version, str(rendered)]))
    for obj in core:
        resource = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        assert f"passed for resource {resource}" in output, output
    for i, obj in enumerate(custom):
        path = tmp_path / f"custom-{i}.yaml"
        path.write_text(yaml.safe_dump(obj))
        schema = SCHEMAS / CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
        assert_ok(run([tool("check-jsonschema"), "--schemafile", str(schema), str(path)]))
    assert all(obj["metadata"].get("namespace") == "sluice" for obj in core + custom)


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "deployment.yaml"
    text = (K8S_BASE / "deployment.yaml").read_text()
    bad.write_text(text.replace("terminationGracePeriodSeconds:", "terminationGracePeriod:"))
    result = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSIONS[0], str(bad)])
    assert result.returncode != 0, result.stdout + result.stderr


def test_vendored_schemas_are_valid_json_schemas() -> None:
    schemas = [str(SCHEMAS / name) for name in sorted(set(CRD_SCHEMAS.values()))]
    assert_ok(run([tool("check-jsonschema"), "--check-metaschema", *schemas]))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queueLength:", "queueLenght:"),  # a metadata key the scaler would ignore
        ("minReplicaCount:", "minReplicas:"),  # an HPA field name, pruned by the API server
        ('queueLength: "300000"', "queueLength: 300000"),  # KEDA metadata values are strings
    ],
)
def test_keda_schema_rejects_mistakes(tmp_path: Path, old: str, new: str) -> None:
    text = (K8S_BASE / "keda-scaledobject.yaml").read_text()
    assert old in text
    bad = tmp_path / "scaledobject.yaml"
    bad.write_text(text.replace(old, new))
    schema = SCHEMAS / KEDA["keda-scaledobject.yaml"]
    result = run([tool("check-jsonschema"), "--schemafile", str(schema), str(bad)])
    assert result.returncode != 0, result.stdout


def test_base_lists_the_keda_variant_only_and_names_no_sink() -> None:
    kustomization = base("kustomization.yaml")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert set(resources) == set(CORE) | set(KEDA)
    images = {image["name"] for image in kustomization["images"]}
    containers = base("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert {c["image"].rsplit(":", 1)[0] for c in containers} <= images
    assert "SLUICE_SINK" not in base("configmap.yaml")["data"]  # each overlay says which
    assert all("secretRef" not in s for c in containers for s in c["envFrom"])


def test_the_default_is_the_redshift_overlay() -> None:
    assert kustomize(K8S) == kustomize(K8S_OVERLAYS / "redshift")


def test_redshift_overlay_makes_a_redshift_worker_with_no_secret() -> None:
    settings = load_settings(environment("redshift"))
    assert settings.sink is SinkKind.REDSHIFT
    assert settings.redshift.cluster_identifier and settings.redshift.db_user
    assert settings.redshift.database
    assert settings.redshift.copy and settings.redshift.iam_role
    assert settings.enable_consumer is True
    assert "SLUICE_DATABASE_URL" not in environment("redshift")


def test_postgres_overlay_makes_a_postgres_worker_with_its_secret() -> None:
    env = environment("postgres")
    assert "SLUICE_DATABASE_URL" in env  # from the sluice-secrets Secret
    assert load_settings(env).sink is SinkKind.POSTGRES
    assert not any(name.startswith("REDSHIFT_C") for name in env)


@pytest.mark.parametrize("target", ["redshift", "postgres"])
def test_memory_clears_the_measured_peak(target: str) -> None:
    resources = container_of(target)["resources"]
    mib = {"Mi": 2**20, "Gi": 2**30}
    request, limit = (
        int(value[:-2]) * mib[value[-2:]]
        for value in (resources["requests"]["memory"], resources["limits"]["memory"])
    )
    peak = PEAK_MB[target] * 10**6
    assert request > peak, "the scheduler must reserve what a worker is measured to use"
    assert limit >= 1.5 * peak and limit >= request
    assert resources["requests"]["cpu"] == "1"
    assert "cpu" not in resources["limits"]


@pytest.mark.parametrize("target", ["redshift", "postgres"])
def test_overlay_service_account_has_an_irsa_role(target: str) -> None:
    account = objects(target)[("ServiceAccount", "sluice")]
    annotations = account["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert annotations["eks.amazonaws.com/sts-regional-endpoints"] == "true"
    assert pod_spec(target)["serviceAccountName"] == "sluice"
    assert account["automountServiceAccountToken"] is False


def test_worker_id_is_the_pod_name() -> None:
    (worker_id,) = [e for e in container_of("redshift")["env"] if e["name"] == "WORKER_ID"]
    assert worker_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("target", ["redshift", "postgres"])
def test_probes_and_scrape_annotations_use_port(target: str) -> None:
    config = environment(target)
    container = container_of(target)
    port = int(config["PORT"])
    (named,) = container["ports"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": named["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": named["name"]}
    deployment = objects(target)[("Deployment", "sluice")]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    grace = float(config["SLUICE_SHUTDOWN_GRACE"])
    assert pod_spec(target)["terminationGracePeriodSeconds"] >= grace + 10


def test_pod_runs_locked_down() -> None:
    deployment = objects("redshift")[("Deployment", "sluice")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    security = container_of("redshift")["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container_of("redshift")["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


def test_selectors_match_the_pods() -> None:
    rendered = objects("redshift")
    deployment = rendered[("Deployment", "sluice")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        rendered[("PodDisruptionBudget", "sluice")]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()


def test_keda_and_hpa_agree_with_each_other_and_with_ecs() -> None:
    config = environment("redshift")
    scaled = base("keda-scaledobject.yaml")["spec"]
    hpa = load_yaml(K8S / "hpa-alternative.yaml")["spec"]
    deployment_name = base("deployment.yaml")["metadata"]["name"]
    assert scaled["scaleTargetRef"]["name"] == hpa["scaleTargetRef"]["name"] == deployment_name
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["queueURL"] == config["SQS_QUEUE_URL"]
    assert trigger["metadata"]["awsRegion"] == config["AWS_REGION"]
    authentication = base("keda-triggerauthentication.yaml")
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
