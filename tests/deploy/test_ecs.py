"""deploy/ecs/sluice.yaml: cfn-lint (errors, warnings and informational checks) and the scaling
and alarm wiring. The sinks, the task's environment and its IAM: test_ecs_sinks.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.pack import ECS_TEMPLATE, assert_ok, load_cfn, run, tool

# Values for the parameters without a default, each checked against its AllowedPattern.
SAMPLE_PARAMETERS = {
    "ImageUri": "123456789012.dkr.ecr.ap-south-1.amazonaws.com/sluice:0.1.0",
    "ClusterName": "data",
    "QueueUrl": "https://sqs.ap-south-1.amazonaws.com/123456789012/appflyer-queue",
    "DeadLetterQueueUrl": "https://sqs.ap-south-1.amazonaws.com/123456789012/appflyer-dlq",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(ECS_TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def container(resources: dict[str, Any]) -> dict[str, Any]:
    (only,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return only


def test_cfn_lint_passes_with_informational_checks() -> None:
    assert_ok(run([tool("cfn-lint"), "--include-checks", "I", "--", str(ECS_TEMPLATE)]))


def test_cfn_lint_rejects_a_misspelt_property(tmp_path: Path) -> None:
    bad = tmp_path / "sluice.yaml"
    bad.write_text(ECS_TEMPLATE.read_text().replace("StopTimeout: 40", "StopTimeut: 40"))
    result = run([tool("cfn-lint"), "--", str(bad)])
    assert result.returncode != 0
    assert "StopTimeut" in result.stdout


def test_sample_parameters_match_the_allowed_patterns(template: dict[str, Any]) -> None:
    for name, value in SAMPLE_PARAMETERS.items():
        pattern = template["Parameters"][name].get("AllowedPattern")
        if pattern:
            assert re.fullmatch(pattern, value), (name, value)
    for name, spec in template["Parameters"].items():
        assert "Default" in spec or name in SAMPLE_PARAMETERS or spec["Type"].startswith("List<")
        if "Default" in spec and "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], str(spec["Default"])), name


def _entries(environment: list[Any]) -> list[dict[str, Any]]:
    """Environment entries, conditional ones included (their `then` branch)."""
    return [entry["Fn::If"][1] if "Fn::If" in entry else entry for entry in environment]


def test_stop_timeout_outlasts_the_shutdown_grace(container: dict[str, Any]) -> None:
    env = {e["Name"]: e["Value"] for e in _entries(container["Environment"])}
    assert container["StopTimeout"] >= float(env["SLUICE_SHUTDOWN_GRACE"]) + 10
    assert container["StopTimeout"] <= 120  # Fargate's maximum


def test_task_is_locked_down_and_logs_to_cloudwatch(container: dict[str, Any]) -> None:
    assert container["User"] == "10001:10001"
    assert container["ReadonlyRootFilesystem"] is True
    assert [m["ContainerPath"] for m in container["MountPoints"]] == ["/tmp"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert "/healthz" in " ".join(container["HealthCheck"]["Command"])
    assert container["PortMappings"][0]["ContainerPort"] == 3000


def test_scalable_target_bounds(template: dict[str, Any], resources: dict[str, Any]) -> None:
    target = resources["ScalableTarget"]["Properties"]
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["MinCapacity"] == {"Ref": "MinTasks"}
    assert target["MaxCapacity"] == {"Ref": "MaxTasks"}
    params = template["Parameters"]
    assert (params["MinTasks"]["Default"], params["MaxTasks"]["Default"]) == (1, 30)
    assert "DesiredCount" not in resources["Service"]["Properties"]


def test_target_tracking_on_backlog_per_task(resources: dict[str, Any]) -> None:
    config = resources["BacklogPerTaskScalingPolicy"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    assert config["TargetValue"] == {"Ref": "TargetBacklogPerTask"}
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
    metrics = {
        (q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"]): qid
        for qid, q in queries.items()
        if "MetricStat" in q
    }
    visible = metrics[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
    tasks = metrics[("ECS/ContainerInsights", "RunningTaskCount")]
    (returned,) = [q for q in queries.values() if q.get("ReturnData")]
    assert returned["Expression"].replace(" ", "") == f"{visible}/{tasks}"


def test_step_scaling_on_oldest_message_age(resources: dict[str, Any]) -> None:
    alarm = resources["OldestMessageScaleOutAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarm["Threshold"] == {"Ref": "ScaleOutAgeSeconds"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "OldestMessageStepScalingPolicy"}]
    policy = resources["OldestMessageStepScalingPolicy"]["Properties"]
    assert policy["PolicyType"] == "StepScaling"
    steps = policy["StepScalingPolicyConfiguration"]["StepAdjustments"]
    assert all(step["ScalingAdjustment"] > 0 for step in steps)


def test_alarm_thresholds_match_the_ops_guide(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    params = template["Parameters"]
    depth = resources["QueueDepthAlarm"]["Properties"]
    assert depth["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert params[depth["Threshold"]["Ref"]]["Default"] == 500_000
    age = resources["OldestMessageAlarm"]["Properties"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert params[age["Threshold"]["Ref"]]["Default"] == 300
    dlq = resources["DeadLetterQueueAlarm"]["Properties"]
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert "DeadLetterQueueUrl" in str(dlq["Dimensions"])


def test_backlog_with_zero_throughput_alarm(resources: dict[str, Any]) -> None:
    alarm = resources["BacklogNotDrainingAlarm"]["Properties"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    names = {
        q["MetricStat"]["Metric"]["MetricName"]: q for q in queries.values() if "MetricStat" in q
    }
    assert set(names) == {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesDeleted"}
    (expression,) = [q["Expression"] for q in queries.values() if q.get("ReturnData")]
    assert "visible > 0" in expression and "deleted" in expression
    period = names["NumberOfMessagesDeleted"]["MetricStat"]["Period"]
    assert period * alarm["EvaluationPeriods"] == 15 * 60
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
