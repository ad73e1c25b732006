"""The SQS event's records as messages, the partial batch response, the deadline policy and
the EMF line: pure pieces of the Lambda handler."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.aws_lambda.budget import DEADLINE_MARGIN_SECONDS, InvocationBudget
from sluice.aws_lambda.emf import Counts, InvocationReport, emf_document
from sluice.aws_lambda.events import NotAnSqsEvent, batch_response, messages_of, to_message
from sluice.aws_lambda.handler import LazyContainer
from sluice.aws_lambda.invocation import batches_of
from sluice.batching import FlushPolicy
from sluice.errors import ConfigError, FailureReason
from sluice.mapping import load_mapping
from sluice.observe.stats import WorkerCounters
from tests.support.lambda_events import appsflyer, event, record, sns


def test_a_documented_record_becomes_the_message_the_decoder_takes() -> None:
    raw = record(
        "{}",
        message_id="059f36b4-87a3-44ab-83d2-661975830a7d",
        receive_count=3,
        sent_ms=1_545_082_649_183,
        attributes={"source": "push", "sig": b"\x00\x01"},
    )
    message = to_message(raw)
    assert message.message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert message.receipt_handle == raw["receiptHandle"]
    assert (message.receive_count, message.sent_timestamp_ms) == (3, 1_545_082_649_183)
    assert message.attributes == (("sig", "Binary", b"\x00\x01"), ("source", "String", "push"))


def test_events_that_are_not_sqs_events_fail_whole() -> None:
    for bad in ({}, {"Records": {}}, {"Records": [1]}, [], "x"):
        with pytest.raises(NotAnSqsEvent):
            messages_of(bad)
    with pytest.raises(NotAnSqsEvent, match="messageId"):
        messages_of(event([{"receiptHandle": "h", "body": "{}"}]))
    with pytest.raises(NotAnSqsEvent, match="aws:kinesis"):
        messages_of(event([record("{}") | {"eventSource": "aws:kinesis"}]))


scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
attribute = st.fixed_dictionaries(
    {},
    optional={
        "dataType": st.sampled_from(["String", "Number", "Binary", "Binary.x"]) | scalars,
        "stringValue": scalars,
        "binaryValue": scalars,
    },
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "messageId": scalars,
        "receiptHandle": scalars,
        "body": scalars,
        "eventSource": st.just("aws:sqs") | scalars,
        "attributes": st.dictionaries(
            st.sampled_from(["ApproximateReceiveCount", "SentTimestamp"]), scalars
        )
        | scalars,
        "messageAttributes": st.dictionaries(st.text(max_size=4), attribute | scalars, max_size=3)
        | scalars,
    },
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(fields)
def test_any_record_is_a_message_or_one_not_an_sqs_event(raw: dict[str, object]) -> None:
    try:
        message = to_message(raw)
    except NotAnSqsEvent:
        return
    assert message.message_id == raw["messageId"]
    assert isinstance(message.body, str)
    for _, data_type, value in message.attributes:
        assert isinstance(value, bytes if data_type.startswith("Binary") else str)


def test_the_answer_names_each_failed_record_once_in_event_order() -> None:
    messages = messages_of(event([record("a", message_id=m) for m in ("x", "y", "x")]))
    assert batch_response([messages[2], messages[0], messages[1]]) == {
        "batchItemFailures": [{"itemIdentifier": "x"}, {"itemIdentifier": "y"}]
    }
    assert batch_response([]) == {"batchItemFailures": []}


def test_batches_follow_the_flush_policy_and_collapse_twins() -> None:
    mapping = load_mapping(None, "events")
    bodies = [appsflyer(1), sns(appsflyer(1)), appsflyer(2), "{", appsflyer(3)]
    messages = messages_of(event([record(b) for b in bodies]))
    (one,) = batches_of(messages, mapping, FlushPolicy(100, 1 << 20, 2.0))
    assert len(one.rows) == 3 and len(one.in_batch_duplicates) == 1 and len(one.dead_letters) == 1
    split = batches_of(messages, mapping, FlushPolicy(2, 1 << 20, 2.0))
    assert [len(b.messages) for b in split] == [2, 2, 1]


def test_the_budget_keeps_the_margin_and_gives_up_in_time() -> None:
    left = [60.0]
    budget = InvocationBudget(lambda: left[0])
    assert budget.for_work() == 60.0 - DEADLINE_MARGIN_SECONDS and budget.allows_load()
    assert not budget.stop_retrying(1, 0.2)
    assert budget.stop_retrying(budget.attempts, 0.2)  # out of attempts
    left[0] = DEADLINE_MARGIN_SECONDS + 1.0
    assert budget.stop_retrying(1, 1.5)  # the wait would run into the margin
    left[0] = DEADLINE_MARGIN_SECONDS
    assert budget.for_work() == 0.0 and not budget.allows_load()


def test_the_emf_line_carries_this_invocations_counts_and_the_stats_line() -> None:
    counters = WorkerCounters(received=5, inserted=5)
    before = Counts.of(counters)
    counters.received += 4
    counters.inserted += 2
    counters.duplicates_in_target += 1
    counters.dead_lettered[FailureReason.INVALID_JSON] += 1
    report = InvocationReport(Counts.of(counters).since(before), 0, 0, 0.25)
    doc = emf_document(
        report,
        function_name="f",
        request_id="r",
        timestamp_ms=1,
        stats={"workerId": "w", "messagesProcessed": 8},
    )
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]  # type: ignore[index]
    assert set(names) <= set(doc)
    assert (doc["Received"], doc["Inserted"], doc["Duplicates"]) == (4, 2, 1)
    assert doc["DeadLettered.invalid_json"] == 1 and doc["DeadLettered"] == 1
    assert (doc["FunctionName"], doc["workerId"], doc["messagesProcessed"]) == ("f", "w", 8)
    orjson.dumps(doc)


def test_a_bad_setting_fails_the_first_invocation_with_one_line() -> None:
    from sluice.aws_lambda.container import LambdaContainer

    lazy = LazyContainer(
        lambda: LambdaContainer.from_environment({"SLUICE_BATCH_MAX_ROWS": "lots"})
    )
    for _ in range(2):  # and every one after it, until fixed
        with pytest.raises(ConfigError) as caught:
            lazy(event([record("{}")]), None)  # type: ignore[arg-type]
        text = str(caught.value)
        assert "SLUICE_BATCH_MAX_ROWS='lots' is invalid" in text and "\n" not in text
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert lazy.built is None


def test_importing_the_handler_reads_nothing_and_connects_nowhere() -> None:
    # A bad setting and an unreachable database: the import must not notice either.
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('connected at import')\n"
        "socket.socket.connect = refuse\n"
        "import sluice.aws_lambda as m\n"
        "assert callable(m.handler) and m.handler.__module__ == 'sluice.aws_lambda.handler'\n"
        "from sluice.aws_lambda.handler import CONTAINER\n"
        "assert CONTAINER.built is None\n"
    )
    env = {"SLUICE_BATCH_MAX_ROWS": "lots", "SLUICE_DATABASE_URL": "postgresql://nowhere:1/x"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_counts_since_leave_out_reasons_that_did_not_change() -> None:
    counters = WorkerCounters()
    counters.dead_lettered[FailureReason.WRONG_TYPE] = 2
    before = Counts.of(counters)
    counters.dead_lettered[FailureReason.EMPTY_BODY] += 1
    delta = Counts.of(counters).since(before)
    assert delta.dead_lettered == ((FailureReason.EMPTY_BODY, 1),)
    assert Counter(dict(delta.dead_lettered)) == Counter({FailureReason.EMPTY_BODY: 1})
