"""Every environment variable the deployment pack sets is one Sluice reads: a name in
sluice.config.SPECS, or one of the AWS SDK's own that botocore reads (listed below, each
checked against botocore's source). A misspelt or retired name would otherwise be carried by
every task and pod and do nothing, as the ECS template's REDSHIFT_* once did."""

from __future__ import annotations

import inspect
from typing import Any

import botocore.configprovider
import botocore.credentials
import pytest

from tests.deploy.pack import (
    COMPOSE,
    ECS_TEMPLATE,
    K8S,
    K8S_BASE,
    K8S_MONITORING,
    K8S_OVERLAYS,
    kustomize,
    load_cfn,
    load_yaml,
    setting_names,
)

# The AWS SDK's variables a deployment may set for Sluice's AWS clients. Sluice reads none of
# them itself (AWS_REGION and the AWS_ENDPOINT_URL_* it does read are in SPECS): botocore does.
SDK_VARIABLES = {
    # static credentials (the compose redshift profile passes them through from the shell)
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    # IRSA: the EKS webhook sets these in the pod from the service account's role annotation
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    # STS in the pod's own region (the eks.amazonaws.com/sts-regional-endpoints annotation)
    "AWS_STS_REGIONAL_ENDPOINTS",
    # a region and a profile by the SDK's own names
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
}


def _names_in_cfn(value: Any) -> set[str]:
    """Every `Name` of an environment or secrets list, in every branch of every Fn::If."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _names_in_cfn(item)
    elif isinstance(value, dict):
        if "Name" in value and ("Value" in value or "ValueFrom" in value):
            found.add(value["Name"])
        for item in value.values():
            found |= _names_in_cfn(item)
    return found


def ecs_names() -> set[str]:
    resources = load_cfn(ECS_TEMPLATE)["Resources"]
    names: set[str] = set()
    for container in resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]:
        names |= _names_in_cfn(container["Environment"]) | _names_in_cfn(container["Secrets"])
    return names


def kubernetes_names() -> set[str]:
    names: set[str] = set()
    for directory in (K8S, K8S_OVERLAYS / "redshift", K8S_OVERLAYS / "postgres", K8S_MONITORING):
        for obj in kustomize(directory):
            if obj["kind"] == "ConfigMap":
                names |= set(obj["data"])
            if obj["kind"] == "Deployment":
                for container in obj["spec"]["template"]["spec"]["containers"]:
                    names |= {e["name"] for e in container.get("env", [])}
    for path in K8S_BASE.glob("*.yaml"):  # the base as written, too
        doc = load_yaml(path)
        if doc.get("kind") == "ConfigMap":
            names |= set(doc["data"])
    return names


def compose_names() -> set[str]:
    names: set[str] = set()
    for service in load_yaml(COMPOSE)["services"].values():
        if service.get("image") == "sluice:local":
            names |= set(service.get("environment", {}))
    return names


def unread(names: set[str]) -> list[str]:
    return sorted(names - setting_names() - SDK_VARIABLES)


@pytest.mark.parametrize(
    "where", ["ecs", "kubernetes", "compose"], ids=["ecs", "kubernetes", "compose"]
)
def test_every_variable_the_templates_set_is_read(where: str) -> None:
    names = {"ecs": ecs_names, "kubernetes": kubernetes_names, "compose": compose_names}[where]()
    assert len(names) >= 10, f"found only {sorted(names)}: the collector is broken"
    assert unread(names) == []


def test_the_collectors_see_the_redshift_settings() -> None:
    wanted = {
        "REDSHIFT_CLUSTER_IDENTIFIER",
        "REDSHIFT_DATABASE",
        "REDSHIFT_DB_USER",
        "SLUICE_S3_STAGING_URI",
        "SLUICE_REDSHIFT_IAM_ROLE",
    }
    assert wanted <= ecs_names()
    assert wanted <= kubernetes_names()
    assert wanted <= compose_names()
    assert "SLUICE_REDSHIFT_WORKGROUP" in ecs_names()
    assert "SLUICE_DATABASE_URL" in ecs_names()  # the postgres branch's secret


def test_a_name_sluice_does_not_read_is_caught() -> None:
    assert unread({"SQS_QUEUE_URL", "REDSHIFT_CLUSTER_ID", "SLUICE_S3_STAGING"}) == [
        "REDSHIFT_CLUSTER_ID",
        "SLUICE_S3_STAGING",
    ]


@pytest.mark.parametrize("name", sorted(SDK_VARIABLES))
def test_each_sdk_variable_is_one_botocore_reads(name: str) -> None:
    sources = "".join(
        inspect.getsource(module) for module in (botocore.credentials, botocore.configprovider)
    )
    assert f"'{name}'" in sources or f'"{name}"' in sources, name
    assert name not in setting_names(), "listed twice: Sluice reads it itself"


def test_no_template_sets_a_region_twice() -> None:
    """AWS_REGION is Sluice's (SPECS); AWS_DEFAULT_REGION beside it would be a second truth."""
    for names in (ecs_names(), kubernetes_names(), compose_names()):
        assert "AWS_DEFAULT_REGION" not in names
