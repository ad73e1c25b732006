"""deploy/ecs/sluice.yaml per sink and load path: the Rules refuse what Sluice would refuse,
the task's environment loads with Sluice's own settings parser, the task's memory clears the
measured Redshift peak, and the created task role allows exactly what that path calls (the
calls read from the code, the policy in step with deploy/iam/worker-policy.json), and the
Data Locker parameters: the task reads only the objects under the prefix, and the COPY policy
allows what Redshift's COPY of one such object does (tests/deploy/iam_match.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from sluice.config import SinkKind, load_settings
from sluice.mapping import load_mapping
from tests.deploy.cfn import Stack
from tests.deploy.pack import DEPLOY, ECS_TEMPLATE, REPO, load_cfn

BASE = {
    "ImageUri": "123456789012.dkr.ecr.ap-south-1.amazonaws.com/sluice:0.1.0",
    "ClusterName": "data",
    "QueueUrl": "https://sqs.ap-south-1.amazonaws.com/123456789012/appflyer-queue",
    "DeadLetterQueueUrl": "https://sqs.ap-south-1.amazonaws.com/123456789012/appflyer-dlq",
}
CLUSTER = {  # the old deployment's variables
    "RedshiftClusterIdentifier": "analytics",
    "RedshiftDatabase": "events",
    "RedshiftDbUser": "sluice",
}
WORKGROUP_ARN = (
    "arn:aws:redshift-serverless:ap-south-1:123456789012:workgroup/"
    "0a1b2c3d-4e5f-4789-abcd-ef0123456789"
)
SERVERLESS = {"RedshiftWorkgroupArn": WORKGROUP_ARN, "RedshiftDatabase": "events"}
STAGING = {
    "StagingBucket": "acme-sluice-staging",
    "StagingPrefix": "sluice/events",
    "CopyRoleArn": "arn:aws:iam::123456789012:role/redshift-copy",
}
SECRET_ARN = "arn:aws:secretsmanager:ap-south-1:123456789012:secret:sluice/dsn-AbCdEf"
POSTGRES = {"Sink": "postgres", "DatabaseUrlSecretArn": SECRET_ARN}
DATA_LOCKER = {"DataLockerBucket": "acme-data-locker", "DataLockerPrefix": "data-locker/"}
KMS_KEY_ARN = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SCENARIOS: dict[str, dict[str, str]] = {
    "redshift-cluster-insert": {**CLUSTER},
    "redshift-cluster-copy": {**CLUSTER, **STAGING},
    "redshift-serverless-insert": {**SERVERLESS},
    "redshift-serverless-copy": {**SERVERLESS, **STAGING},
    "postgres": {**POSTGRES},
    # Data Locker: streamed (no COPY role), or COPYed by Redshift with the COPY role
    "redshift-cluster-copy-datalocker": {**CLUSTER, **STAGING, **DATA_LOCKER},
    "redshift-serverless-copy-datalocker-kms": {
        **SERVERLESS,
        **STAGING,
        **DATA_LOCKER,
        "DataLockerKmsKeyArn": KMS_KEY_ARN,
    },
    "redshift-cluster-insert-datalocker": {**CLUSTER, **DATA_LOCKER},
    "postgres-datalocker-kms": {**POSTGRES, **DATA_LOCKER, "DataLockerKmsKeyArn": KMS_KEY_ARN},
}

SQS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
}
DATA_API = {
    "redshift-data:ExecuteStatement",
    "redshift-data:BatchExecuteStatement",
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
}
S3_STAGING = {"s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}
DATA_LOCKER_READ = {"s3:GetObject"}  # GetObject and HeadObject: no listing
KMS = {"kms:Decrypt"}
CLUSTER_ACTIONS = SQS | DATA_API | {"redshift:GetClusterCredentials"}
SERVERLESS_ACTIONS = SQS | DATA_API | {"redshift-serverless:GetCredentials"}
EXPECTED_ACTIONS = {
    "redshift-cluster-insert": CLUSTER_ACTIONS,
    "redshift-cluster-copy": CLUSTER_ACTIONS | S3_STAGING,
    "redshift-serverless-insert": SERVERLESS_ACTIONS,
    "redshift-serverless-copy": SERVERLESS_ACTIONS | S3_STAGING,
    "postgres": SQS,
    "redshift-cluster-copy-datalocker": CLUSTER_ACTIONS | S3_STAGING | DATA_LOCKER_READ,
    "redshift-serverless-copy-datalocker-kms": SERVERLESS_ACTIONS
    | S3_STAGING
    | DATA_LOCKER_READ
    | KMS,
    "redshift-cluster-insert-datalocker": CLUSTER_ACTIONS | DATA_LOCKER_READ,
    "postgres-datalocker-kms": SQS | DATA_LOCKER_READ | KMS,
}

# The API operations a worker calls, by the files that call them, and the IAM action each
# needs (a batch call is authorised by its single-message action). The Data API's own
# credential calls (GetClusterCredentials, GetCredentials) are made by the service for the
# caller and so appear in no file.
WORKER_CALLS = {
    "sqs": (("sources/sqs.py", "sources/sqs_dlq.py", "sources/sqs_send.py"), "sqs"),
    "s3": (("sinks/redshift/staging.py", "objects/s3read.py", "objects/parquet.py"), "s3"),
    "redshift-data": (("sinks/redshift/data_api.py",), "redshift-data"),
}
OPERATION_ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "SendMessageBatch": "sqs:SendMessage",
    "PutObject": "s3:PutObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "GetObject": "s3:GetObject",  # Data Locker objects: ranged, pinned with If-Match
    "HeadObject": "s3:GetObject",  # HEAD is authorised by s3:GetObject
    "ExecuteStatement": "redshift-data:ExecuteStatement",
    "BatchExecuteStatement": "redshift-data:BatchExecuteStatement",
    "DescribeStatement": "redshift-data:DescribeStatement",
    "GetStatementResult": "redshift-data:GetStatementResult",
    "CancelStatement": "redshift-data:CancelStatement",
}
# Measured peak RSS of a Redshift worker with its defaults (docs/performance.md: 540-600 MB,
# 613-648 MB with 16 receive polls); the task must have at least twice that.
REDSHIFT_PEAK_MB = 648
HEADROOM = 2.0


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(ECS_TEMPLATE)


def stack(template: dict[str, Any], scenario: str, **more: str) -> Stack:
    return Stack.of(template, **{**BASE, **SCENARIOS[scenario], **more})


def container_of(s: Stack) -> dict[str, Any]:
    (only,) = s.eval(s.template["Resources"]["TaskDefinition"]["Properties"])[
        "ContainerDefinitions"
    ]
    return only


def task_policy(s: Stack) -> list[dict[str, Any]]:
    role = s.template["Resources"]["TaskRole"]
    assert s.condition(role["Condition"])
    (policy,) = s.eval(role["Properties"])["Policies"]
    return policy["PolicyDocument"]["Statement"]


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def test_redshift_is_the_default_sink(template: dict[str, Any]) -> None:
    assert template["Parameters"]["Sink"]["Default"] == "redshift"
    assert template["Parameters"]["DatabaseUrlSecretArn"]["Default"] == ""
    # with only the old deployment's variables the stack is a Redshift Data API worker
    assert stack(template, "redshift-cluster-insert").values["Sink"] == "redshift"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_scenario_passes_the_rules_and_loads_as_sluice_settings(
    template: dict[str, Any], scenario: str
) -> None:
    s = stack(template, scenario)
    assert s.failed_rules() == []
    container = container_of(s)
    env = {e["Name"]: str(e["Value"]) for e in container["Environment"]}
    secrets = [x["Name"] for x in container.get("Secrets", [])]
    if scenario.startswith("postgres"):
        assert secrets == ["SLUICE_DATABASE_URL"]
        env["SLUICE_DATABASE_URL"] = "postgresql://sluice:secret@db.internal:5432/events"
    else:
        assert secrets == []  # IAM only: no password anywhere
    settings = load_settings(env)
    assert settings.queue_url == BASE["QueueUrl"]
    assert settings.dlq_url == BASE["DeadLetterQueueUrl"]
    assert settings.aws_region == s.values["AWS::Region"]
    if "datalocker" in scenario:  # the queue carries notifications of Data Locker objects
        assert settings.mapping_file == "appsflyer_data_locker"
        assert load_mapping(settings.mapping_file, settings.table_name).columns
    else:
        assert settings.mapping_file is None
    if scenario.startswith("postgres"):
        assert settings.sink is SinkKind.POSTGRES
        assert not any(name.startswith(("REDSHIFT_C", "REDSHIFT_D", "SLUICE_S3")) for name in env)
        return
    assert settings.sink is SinkKind.REDSHIFT
    assert settings.redshift.database == "events"
    if "cluster" in scenario:
        assert settings.redshift.cluster_identifier == "analytics"
        assert settings.redshift.db_user == "sluice"
        assert settings.redshift.workgroup is None
    else:
        assert settings.redshift.workgroup == WORKGROUP_ARN
        assert settings.redshift.cluster_identifier is None
    if "-copy" in scenario:
        assert settings.redshift.s3_staging_uri == "s3://acme-sluice-staging/sluice/events"
        assert settings.redshift.iam_role == STAGING["CopyRoleArn"]
        assert settings.redshift.copy
    else:
        assert settings.redshift.s3_staging_uri is None and not settings.redshift.copy


@pytest.mark.parametrize(
    ("scenario", "overrides", "rule"),
    [
        ("postgres", {"DatabaseUrlSecretArn": ""}, "PostgresNeedsItsSecret"),
        ("redshift-cluster-insert", {"RedshiftDatabase": ""}, "RedshiftNeedsADatabase"),
        ("redshift-cluster-insert", {"RedshiftDbUser": ""}, "RedshiftNeedsOneWarehouse"),
        (
            "redshift-cluster-insert",
            {"RedshiftWorkgroupArn": WORKGROUP_ARN},
            "RedshiftNeedsOneWarehouse",
        ),
        ("redshift-cluster-copy", {"CopyRoleArn": ""}, "CopyNeedsItsRole"),
        ("redshift-cluster-insert", {"TaskMemory": "1024"}, "RedshiftWorkerMemory"),
    ],
)
def test_rules_refuse_a_stack_that_would_crash_loop(
    template: dict[str, Any], scenario: str, overrides: dict[str, str], rule: str
) -> None:
    assert stack(template, scenario, **overrides).failed_rules() == [rule]


def test_only_the_old_variables_and_nothing_else_is_refused(template: dict[str, Any]) -> None:
    """Defaults alone (no warehouse named) must not make a stack: Sluice would refuse it."""
    assert "RedshiftNeedsADatabase" in Stack.of(template, **BASE).failed_rules()


def test_task_memory_clears_the_measured_redshift_peak(template: dict[str, Any]) -> None:
    allowed = template["Parameters"]["TaskMemory"]["AllowedValues"]
    accepted = [m for m in allowed if not stack(template, "redshift-cluster-copy", TaskMemory=m)
                .failed_rules()]  # fmt: skip
    assert accepted, "no memory size is accepted for Redshift"
    for mib in accepted:
        assert int(mib) * 2**20 >= HEADROOM * REDSHIFT_PEAK_MB * 10**6, mib
    assert template["Parameters"]["TaskMemory"]["Default"] in accepted


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_task_role_allows_what_the_path_calls_and_no_more(
    template: dict[str, Any], scenario: str
) -> None:
    statements = task_policy(stack(template, scenario))
    assert actions_of(statements) == EXPECTED_ACTIONS[scenario]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        if statement["Resource"] == "*":  # statement ids have no ARN: own statements only
            assert set(actions_of([statement])) <= DATA_API
            assert statement["Condition"] == {
                "StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
            }
    by_sid = {st["Sid"]: st for st in statements}
    assert by_sid["ConsumeSourceQueue"]["Resource"] == (
        "arn:aws:sqs:ap-south-1:123456789012:appflyer-queue"
    )
    assert by_sid["DeadLetterPermanentFailures"]["Resource"] == (
        "arn:aws:sqs:ap-south-1:123456789012:appflyer-dlq"
    )
    if "StageBatchesForCopy" in by_sid:
        assert by_sid["StageBatchesForCopy"]["Resource"] == (
            "arn:aws:s3:::acme-sluice-staging/sluice/events/*"
        )
    if "ReadDataLockerObjects" in by_sid:
        assert by_sid["ReadDataLockerObjects"]["Resource"] == (
            "arn:aws:s3:::acme-data-locker/data-locker/*"
        )
    if "DecryptDataLockerObjects" in by_sid:
        assert by_sid["DecryptDataLockerObjects"]["Resource"] == KMS_KEY_ARN
        assert by_sid["DecryptDataLockerObjects"]["Condition"] == {
            "StringEquals": {"kms:ViaService": "s3.ap-south-1.amazonaws.com"}
        }
    if "TemporaryCredentialsForTheConfiguredUser" in by_sid:
        assert by_sid["TemporaryCredentialsForTheConfiguredUser"]["Resource"] == [
            "arn:aws:redshift:ap-south-1:123456789012:dbuser:analytics/sluice",
            "arn:aws:redshift:ap-south-1:123456789012:dbname:analytics/events",
        ]
    if "ServerlessCredentials" in by_sid:
        assert by_sid["ServerlessCredentials"]["Resource"] == WORKGROUP_ARN
        assert by_sid["SubmitStatementsToTheWarehouse"]["Resource"] == WORKGROUP_ARN


def _operations_called(paths: tuple[str, ...], service: str) -> set[str]:
    """Operations of `service` named in the files: as a botocore method (`.put_object(`) or
    as the operation name the SQS wire client and the error translation use."""
    model = botocore.session.get_session().get_service_model(service)
    names = set(model.operation_names)
    snake = {xform_name(name): name for name in names}
    found: set[str] = set()
    for path in paths:
        text = (REPO / "src" / "sluice" / path).read_text()
        found.update(snake[m] for m in re.findall(r"\.(\w+)\(", text) if m in snake)
        found.update(m for m in re.findall(r'"([A-Z]\w+)"', text) if m in names)
    return found


@pytest.mark.parametrize("service", sorted(WORKER_CALLS))
def test_every_operation_the_worker_calls_has_its_action(service: str) -> None:
    paths, botocore_name = WORKER_CALLS[service]
    called = _operations_called(paths, botocore_name)
    assert called, f"no {service} call found: the scan is broken"
    assert called <= set(OPERATION_ACTIONS), f"new {service} calls: update the IAM policies"
    widest = set().union(*EXPECTED_ACTIONS.values())
    assert {OPERATION_ACTIONS[op] for op in called} <= widest


def test_no_pass_role_and_no_read_of_the_staged_files(template: dict[str, Any]) -> None:
    every = set().union(*(actions_of(task_policy(stack(template, s))) for s in SCENARIOS))
    assert "iam:PassRole" not in every  # COPY uses the role associated with the cluster
    # Redshift reads the staged files with the COPY role; the worker reads Data Locker objects
    for scenario in SCENARIOS:
        for statement in task_policy(stack(template, scenario)):
            if "s3:GetObject" in actions_of([statement]):
                assert statement["Resource"] == "arn:aws:s3:::acme-data-locker/data-locker/*"


def test_task_role_is_the_iam_folder_policy(template: dict[str, Any]) -> None:
    """The template's role and deploy/iam/worker-policy.json grant the same, statement by
    statement (the file has every optional statement; the README says which to delete)."""
    document = json.loads((DEPLOY / "iam" / "worker-policy.json").read_text())
    file_statements = {st["Sid"]: actions_of([st]) for st in document["Statement"]}
    template_statements: dict[str, set[str]] = {}
    for scenario in SCENARIOS:
        for st in task_policy(stack(template, scenario)):
            template_statements.setdefault(st["Sid"], set()).update(actions_of([st]))
    assert template_statements == file_statements


def test_execution_role_reads_the_secret_for_postgres_only(template: dict[str, Any]) -> None:
    role = template["Resources"]["ExecutionRole"]
    postgres = stack(template, "postgres").eval(role["Properties"])
    (policy,) = postgres["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == (
        "secretsmanager:GetSecretValue",
        SECRET_ARN,
    )
    redshift = stack(template, "redshift-cluster-copy").eval(role["Properties"])
    assert "Policies" not in redshift


def test_roles_of_your_own_replace_the_created_ones(template: dict[str, Any]) -> None:
    own = "arn:aws:iam::123456789012:role/sluice-task"
    s = stack(template, "redshift-cluster-copy", TaskRoleArn=own)
    assert not s.condition(template["Resources"]["TaskRole"]["Condition"])
    task = s.eval(template["Resources"]["TaskDefinition"]["Properties"])
    assert task["TaskRoleArn"] == own
    assert task["ExecutionRoleArn"] == "<ExecutionRole.Arn>"


def test_every_scenario_parameter_matches_its_pattern(template: dict[str, Any]) -> None:
    for overrides in SCENARIOS.values():
        for name, value in overrides.items():
            pattern = template["Parameters"][name].get("AllowedPattern")
            if pattern:
                assert re.fullmatch(pattern, value), (name, value)


def test_iam_readme_names_the_files() -> None:
    readme = (DEPLOY / "iam" / "README.md").read_text()
    assert "worker-policy.json" in readme and "iam:PassRole" in readme
