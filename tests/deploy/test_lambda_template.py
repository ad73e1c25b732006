"""deploy/lambda/template.yaml: cfn-lint offline (errors, warnings and informational checks),
the event source mapping's partial batch responses, batching and concurrency, the redrive to
the DLQ, a role with only the calls the handler and the mapping make, the alarms, and the
function's environment in Sluice's own variable names."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from sluice.aws_lambda.budget import DEADLINE_MARGIN_SECONDS
from tests.deploy.cfn import Stack
from tests.deploy.pack import DEPLOY, assert_ok, load_cfn, run, setting_names, tool

TEMPLATE = DEPLOY / "lambda" / "template.yaml"
CLUSTER = {"RedshiftDatabase": "dev", "RedshiftClusterIdentifier": "c1", "RedshiftDbUser": "u"}
SAMPLE = {"CodeBucket": "artifacts-123", **CLUSTER}
SECRET = "arn:aws:secretsmanager:ap-south-1:123456789012:secret:sluice-dsn-AbCdEf"
QUEUE = "arn:aws:sqs:ap-south-1:123456789012:appflyer-queue"
DLQ = "arn:aws:sqs:ap-south-1:123456789012:appflyer-dlq"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(TEMPLATE)


def test_cfn_lint_passes_with_informational_checks() -> None:
    assert_ok(run([tool("cfn-lint"), "--include-checks", "I", "--", str(TEMPLATE)]))


def test_cfn_lint_rejects_a_misspelt_property(tmp_path: Path) -> None:
    bad = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    assert "FunctionResponseTypes:" in text
    bad.write_text(text.replace("FunctionResponseTypes:", "FunctionResponseType:"))
    result = run([tool("cfn-lint"), "--", str(bad)])
    assert result.returncode != 0
    assert "FunctionResponseType" in result.stdout


def test_the_mapping_reports_item_failures_and_bounds_batches_and_concurrency(
    template: dict[str, Any],
) -> None:
    mapping = template["Resources"]["EventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    params = template["Parameters"]
    assert params["BatchSize"]["MaxValue"] == 10_000
    assert params["MaximumBatchingWindowInSeconds"]["MaxValue"] == 300
    assert params["MaximumConcurrency"]["MinValue"] == 2  # the least AWS accepts
    assert mapping["BatchSize"] == {"Ref": "BatchSize"}
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}
    # the queue hides a record for at least six invocation timeouts (AWS's advice)
    assert params["QueueVisibilityTimeout"]["Default"] >= 6 * params["FunctionTimeout"]["Default"]
    assert params["FunctionTimeout"]["MinValue"] > DEADLINE_MARGIN_SECONDS * 4


def test_the_handler_named_is_the_one_the_zip_carries(template: dict[str, Any]) -> None:
    function = template["Resources"]["Function"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_a_created_queue_redrives_to_the_created_dlq(template: dict[str, Any]) -> None:
    stack = Stack.of(template, **SAMPLE)
    assert stack.condition("CreateQueue") and stack.condition("CreateDeadLetterQueue")
    queue = stack.eval(template["Resources"]["Queue"]["Properties"])
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "<DeadLetterQueue.Arn>"
    env = stack.eval(template["Resources"]["Function"]["Properties"]["Environment"])
    assert env["Variables"]["SLUICE_DLQ_URL"] == "<DeadLetterQueue>"


def test_existing_queues_are_used_and_named_in_the_dlq_url(template: dict[str, Any]) -> None:
    stack = Stack.of(template, **SAMPLE, QueueArn=QUEUE, DeadLetterQueueArn=DLQ)
    assert stack.failed_rules() == []
    env = stack.eval(template["Resources"]["Function"]["Properties"]["Environment"])
    # (the evaluator leaves AWS::URLSuffix unresolved: amazonaws.com in the commercial regions)
    assert env["Variables"]["SLUICE_DLQ_URL"] == (
        "https://sqs.ap-south-1.${AWS::URLSuffix}/123456789012/appflyer-dlq"
    )
    mapping = stack.eval(template["Resources"]["EventSourceMapping"]["Properties"])
    assert mapping["EventSourceArn"] == QUEUE
    assert "QueuesTogether" in Stack.of(template, **SAMPLE, QueueArn=QUEUE).failed_rules()


def _statements(template: dict[str, Any], **values: Any) -> dict[str, dict[str, Any]]:
    stack = Stack.of(template, **values)
    (policy,) = stack.eval(template["Resources"]["FunctionRole"]["Properties"]["Policies"])
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_the_role_allows_only_what_the_handler_and_the_mapping_call(
    template: dict[str, Any],
) -> None:
    redshift = _statements(template, **SAMPLE, QueueArn=QUEUE, DeadLetterQueueArn=DLQ)
    assert set(redshift) == {
        "EventSourceMappingPollsTheQueue",
        "DeadLetterPermanentFailures",
        "WriteOwnLogs",
        "SubmitStatementsToTheWarehouse",
        "FollowOnlyOwnStatements",
        "TemporaryCredentialsForTheConfiguredUser",
    }
    poll = redshift["EventSourceMappingPollsTheQueue"]
    assert poll["Resource"] == QUEUE
    assert _actions(poll) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    letters = redshift["DeadLetterPermanentFailures"]
    assert letters["Resource"] == DLQ
    assert _actions(letters) == {"sqs:SendMessage", "sqs:GetQueueAttributes"}
    for statement in redshift.values():
        assert statement["Effect"] == "Allow"
        assert not any(a.endswith("*") for a in _actions(statement)), statement["Sid"]
        if statement["Resource"] == "*":  # only where the action takes no resource ARN
            assert "Condition" in statement, statement["Sid"]
    postgres = _statements(template, CodeBucket="b-1", Sink="postgres", DatabaseUrlSecretArn=SECRET)
    assert set(postgres) == {
        "EventSourceMappingPollsTheQueue",
        "DeadLetterPermanentFailures",
        "WriteOwnLogs",
    }


def test_the_function_environment_uses_sluices_own_names(template: dict[str, Any]) -> None:
    for values in (
        SAMPLE,
        {"CodeBucket": "b-1", "Sink": "postgres", "DatabaseUrlSecretArn": SECRET},
    ):
        stack = Stack.of(template, **values)
        assert stack.failed_rules() == []
        env = stack.eval(template["Resources"]["Function"]["Properties"]["Environment"])
        names = set(env["Variables"])
        assert names <= setting_names(), names - setting_names()
    assert env["Variables"]["SLUICE_DATABASE_URL"].startswith("{{resolve:secretsmanager:")
    assert (
        "PostgresNeedsItsSecret"
        in Stack.of(template, CodeBucket="b-1", Sink="postgres").failed_rules()
    )
    assert (
        "RedshiftNeedsOneWarehouse"
        in Stack.of(template, CodeBucket="b-1", RedshiftDatabase="dev").failed_rules()
    )


def test_alarms_watch_errors_throttles_the_dlq_and_the_oldest_message(
    template: dict[str, Any],
) -> None:
    alarms = {
        (r["Properties"]["Namespace"], r["Properties"]["MetricName"])
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert alarms == {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("Sluice", "BatchItemFailures"),  # the handler's EMF line
    }
