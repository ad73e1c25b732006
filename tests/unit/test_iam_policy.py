"""deploy/iam: valid policy documents, least privilege, nothing left unscoped by accident."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

IAM = Path(__file__).resolve().parents[2] / "deploy" / "iam"
# Actions that support no resource ARN; each must carry a condition instead.
UNSCOPABLE = {
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
}


def statements(name: str) -> list[dict[str, Any]]:
    document = json.loads((IAM / name).read_text())
    assert document["Version"] == "2012-10-17"
    return list(document["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


@pytest.mark.parametrize("name", ["worker-policy.json", "copy-role-policy.json"])
def test_no_wildcard_actions_and_no_wildcard_resources_where_avoidable(name: str) -> None:
    for statement in statements(name):
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= UNSCOPABLE, statement["Sid"]
            assert "redshift-data:statement-owner-iam-userid" in json.dumps(statement["Condition"])


def test_the_worker_gets_exactly_what_it_calls() -> None:
    granted = {a for s in statements("worker-policy.json") for a in as_list(s["Action"])}
    assert granted == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "redshift-data:ExecuteStatement",
        "redshift-data:BatchExecuteStatement",
        "redshift-data:DescribeStatement",
        "redshift-data:GetStatementResult",
        "redshift-data:CancelStatement",
        "redshift:GetClusterCredentials",
        "redshift-serverless:GetCredentials",
        "s3:GetObject",  # Data Locker objects only (below)
        "kms:Decrypt",  # a Data Locker bucket under a customer managed key, through S3 only
    }


STAGED = "arn:aws:s3:::{{StagingBucket}}/{{StagingPrefix}}/*"
DATA_LOCKER = "arn:aws:s3:::{{DataLockerBucket}}/{{DataLockerPrefix}}*"
BUCKETS = {
    "arn:aws:s3:::{{StagingBucket}}": "{{StagingPrefix}}",
    "arn:aws:s3:::{{DataLockerBucket}}": "{{DataLockerPrefix}}",
}


def test_s3_rights_stop_at_the_staging_and_data_locker_prefixes() -> None:
    for name in ("worker-policy.json", "copy-role-policy.json"):
        for statement in statements(name):
            if not any(a.startswith("s3:") for a in as_list(statement["Action"])):
                continue
            for resource in as_list(statement["Resource"]):
                if resource in BUCKETS:  # the bucket itself: listing, limited to the prefix
                    assert statement["Action"] == "s3:ListBucket"
                    assert BUCKETS[resource] in json.dumps(statement["Condition"])
                else:
                    assert resource in (STAGED, DATA_LOCKER), resource


def test_reads_are_of_data_locker_objects_and_of_staged_files_only_by_copy() -> None:
    """The worker reads Data Locker objects (never the staged files, which COPY reads);
    the COPY role reads both (an object's COPY through a manifest staged for it); neither
    lists the Data Locker bucket: only the staging prefix is listed."""
    for name, readable in (
        ("worker-policy.json", {DATA_LOCKER}),
        ("copy-role-policy.json", {STAGED, DATA_LOCKER}),
    ):
        found = {
            resource
            for statement in statements(name)
            if "s3:GetObject" in as_list(statement["Action"])
            for resource in as_list(statement["Resource"])
        }
        assert found == readable, name
    for name in ("worker-policy.json", "copy-role-policy.json"):
        listed = {
            resource
            for statement in statements(name)
            if statement["Action"] == "s3:ListBucket"
            for resource in as_list(statement["Resource"])
        }
        assert listed == {"arn:aws:s3:::{{StagingBucket}}"}, name


def test_kms_decrypt_only_through_s3_on_the_named_key() -> None:
    for name in ("worker-policy.json", "copy-role-policy.json"):
        [statement] = [s for s in statements(name) if "kms:Decrypt" in as_list(s["Action"])]
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == "{{DataLockerKmsKeyArn}}"
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": "s3.{{DataLockerRegion}}.amazonaws.com"}
        }


def test_credentials_only_for_the_configured_user_and_database() -> None:
    [statement] = [
        s
        for s in statements("worker-policy.json")
        if s["Action"] == "redshift:GetClusterCredentials"
    ]
    assert sorted(statement["Resource"]) == [
        "arn:aws:redshift:{{Region}}:{{AccountId}}:dbname:{{ClusterIdentifier}}/{{DbName}}",
        "arn:aws:redshift:{{Region}}:{{AccountId}}:dbuser:{{ClusterIdentifier}}/{{DbUser}}",
    ]


def test_every_placeholder_is_documented() -> None:
    readme = (IAM / "README.md").read_text()
    found = set()
    for path in IAM.glob("*.json"):
        found |= set(re.findall(r"\{\{(\w+)\}\}", path.read_text()))
    assert found, "placeholders expected"
    assert sorted(p for p in found if "{{" + p + "}}" not in readme) == []


def test_only_redshift_may_assume_the_copy_role() -> None:
    [statement] = statements("copy-role-trust.json")
    assert statement["Principal"] == {"Service": "redshift.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
