"""Envelopes to events: raw, SNS, S3 notifications and test events, and bodies refused."""

from __future__ import annotations

import orjson
import pytest

from sluice.decode import decode_message, parse_event, unwrap
from sluice.errors import FailureReason, MessageError
from sluice.mapping import RAW_EVENT, load_mapping
from sluice.model import DeadLetter, Ignored, MappedRow, ObjectsAnnounced, ReceivedMessage

MAPPING = load_mapping(None, "events")
RAW_INDEX = [c.name for c in MAPPING.load_columns].index(RAW_EVENT)

EVENT: dict[str, object] = {
    "appsflyer_id": "1700000000000-1234567",
    "event_name": "af_purchase",
    "event_time": "2024-05-01 12:34:56.789",
    "event_revenue": "1.99",
}


def message(body: str, message_id: str = "m-1") -> ReceivedMessage:
    return ReceivedMessage(message_id, f"{message_id}#1", body, 1, 1_714_566_896_000)


def sns(inner: str) -> str:
    return orjson.dumps(
        {
            "Type": "Notification",
            "MessageId": "6f1c0b7e-0000-0000-0000-000000000000",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:appsflyer",
            "Message": inner,
            "Timestamp": "2024-05-01T12:34:57.000Z",
        }
    ).decode()


def s3_notification() -> str:
    return orjson.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": "k.json"}},
                }
            ]
        }
    ).decode()


S3_TEST_EVENT = orjson.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-05-01T12:00:00.000Z",
        "Bucket": "b",
    }
).decode()


def refused(body: str) -> MessageError:
    with pytest.raises(MessageError) as info:
        unwrap(body)
    return info.value


# -- unwrap ----------------------------------------------------------------------------------


def test_raw_event_is_its_own_text() -> None:
    body = orjson.dumps(EVENT).decode()
    assert unwrap(body) == (EVENT, body)


def test_sns_notification_is_unwrapped_to_the_inner_message() -> None:
    inner = orjson.dumps(EVENT).decode()
    result = unwrap(sns(inner))
    assert result is not None
    event, text = result
    assert event == EVENT
    assert text == inner  # the raw text is the inner Message, not the envelope


def test_notification_without_topic_arn_is_not_treated_as_sns() -> None:
    body = orjson.dumps({"Type": "Notification", "Message": "{}"}).decode()
    result = unwrap(body)
    assert result is not None
    assert result[0]["Type"] == "Notification"  # left as is: the event itself


def test_sns_with_a_non_json_message_is_invalid_json() -> None:
    assert refused(sns("hello")).reason is FailureReason.INVALID_JSON


def test_s3_event_notification_is_unsupported() -> None:
    assert refused(s3_notification()).reason is FailureReason.UNSUPPORTED_ENVELOPE


def test_s3_notification_inside_sns_is_unsupported() -> None:
    assert refused(sns(s3_notification())).reason is FailureReason.UNSUPPORTED_ENVELOPE


def test_s3_test_event_has_nothing_to_load() -> None:
    assert unwrap(S3_TEST_EVENT) is None
    assert unwrap(sns(S3_TEST_EVENT)) is None


def test_records_from_another_source_are_an_ordinary_event() -> None:
    body = orjson.dumps({"Records": [{"eventSource": "aws:kinesis"}]}).decode()
    assert unwrap(body) is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", FailureReason.EMPTY_BODY),
        ("   \n\t", FailureReason.EMPTY_BODY),
        ("{", FailureReason.INVALID_JSON),
        ('{"a": 1,}', FailureReason.INVALID_JSON),
        ("not json", FailureReason.INVALID_JSON),
        ('{"a": NaN}', FailureReason.INVALID_JSON),
        ('{"a": Infinity}', FailureReason.INVALID_JSON),
        ('{"a": -Infinity}', FailureReason.INVALID_JSON),
        ('{"a": 1e400}', FailureReason.INVALID_JSON),
        ("[1, 2]", FailureReason.NOT_AN_OBJECT),
        ('[{"event_name": "install"}]', FailureReason.NOT_AN_OBJECT),
        ('"a string"', FailureReason.NOT_AN_OBJECT),
        ("42", FailureReason.NOT_AN_OBJECT),
        ("null", FailureReason.NOT_AN_OBJECT),
        ('{"a": "x\\u0000y"}', FailureReason.INVALID_CHARACTER),
        ('{"a\\u0000": 1}', FailureReason.INVALID_CHARACTER),
        ('{"a": {"b": ["ok", "\\u0000"]}}', FailureReason.INVALID_CHARACTER),
    ],
)
def test_bodies_refused_with_their_reason(body: str, reason: FailureReason) -> None:
    assert refused(body).reason is reason


def test_array_reason_names_what_was_found() -> None:
    assert "list" in refused("[]").detail


def test_escaped_backslash_before_u0000_text_is_not_a_nul() -> None:
    body = '{"a": "C:\\\\u0000dir"}'  # JSON text: a backslash, then the letters u0000
    assert "\\\\u0000" in body
    result = unwrap(body)
    assert result is not None
    assert result[0]["a"] == "C:\\u0000dir"
    assert "\x00" not in str(result[0]["a"])


def test_nul_inside_sns_message_is_refused() -> None:
    inner = '{"a": "x\\u0000"}'
    assert refused(sns(inner)).reason is FailureReason.INVALID_CHARACTER


def test_parse_event_returns_the_object() -> None:
    assert parse_event('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


# -- decode_message ----------------------------------------------------------------------------


def test_decode_valid_raw_event_is_a_row_with_the_body_as_raw_event() -> None:
    body = orjson.dumps(EVENT).decode()
    decoded = decode_message(message(body), MAPPING)
    assert isinstance(decoded, MappedRow)
    assert decoded.values[RAW_INDEX] == body
    assert decoded.message.body == body


def test_decode_sns_event_keeps_the_inner_text_as_raw_event() -> None:
    inner = orjson.dumps(EVENT).decode()
    decoded = decode_message(message(sns(inner)), MAPPING)
    assert isinstance(decoded, MappedRow)
    assert decoded.values[RAW_INDEX] == inner
    raw = decode_message(message(inner), MAPPING)
    assert isinstance(raw, MappedRow)
    assert decoded.dedupe_key == raw.dedupe_key  # same event, same key, whatever the envelope


def test_decode_bad_body_is_a_dead_letter_with_reason_and_detail() -> None:
    msg = message("[1]")
    decoded = decode_message(msg, MAPPING)
    assert isinstance(decoded, DeadLetter)
    assert decoded.message == msg
    assert decoded.reason is FailureReason.NOT_AN_OBJECT
    assert decoded.detail


def test_decode_s3_notification_announces_its_objects() -> None:
    # k.json is no Data Locker object: named, skipped, nothing to load (details in
    # tests/unit/test_data_locker_notification.py).
    decoded = decode_message(message(s3_notification()), MAPPING)
    assert isinstance(decoded, ObjectsAnnounced)
    assert decoded.objects == ()
    assert [ref.key for ref, _ in decoded.skipped] == ["k.json"]


def test_decode_s3_test_event_is_ignored() -> None:
    msg = message(S3_TEST_EVENT)
    decoded = decode_message(msg, MAPPING)
    assert decoded == Ignored(msg, "s3:TestEvent")


def test_decode_mapping_failure_is_a_dead_letter() -> None:
    event = {k: v for k, v in EVENT.items() if k != "event_name"}
    decoded = decode_message(message(orjson.dumps(event).decode()), MAPPING)
    assert isinstance(decoded, DeadLetter)
    assert decoded.reason is FailureReason.MISSING_REQUIRED
    assert "event_name" in decoded.detail
