"""Properties: decoding never raises, and a batch accounts for every message it was given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.batching import Batch, FlushPolicy
from sluice.decode import decode_message
from sluice.errors import FailureReason
from sluice.mapping import load_mapping
from sluice.model import DeadLetter, Ignored, MappedRow, ReceivedMessage

MAPPING = load_mapping(None, "t")
MAPPED_FIELDS = [c.path[0] for c in MAPPING.columns]

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders emit
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
timestamp_texts = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.datetimes(timezones=offsets).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.integers(min_value=-(10**15), max_value=10**15),
)
# Values aimed at the mapped columns, so the converters are exercised and not only the
# missing-required path.
field_values = json_values | timestamp_texts | st.sampled_from(["", "true", "FALSE", "1.5", "{}"])
events = st.fixed_dictionaries(
    {},
    optional={name: field_values for name in MAPPED_FIELDS},
) | st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def received(body: str, n: int = 0, sent_ms: int = 1_714_566_896_000) -> ReceivedMessage:
    return ReceivedMessage(f"m-{n}", f"m-{n}#1", body, 1, sent_ms)


def assert_decodes(body: str) -> None:
    decoded = decode_message(received(body), MAPPING)
    assert isinstance(decoded, MappedRow | DeadLetter | Ignored)
    if isinstance(decoded, MappedRow):
        assert len(decoded.values) == len(MAPPING.load_columns)
        assert len(decoded.dedupe_key) == 64
    if isinstance(decoded, DeadLetter):
        assert isinstance(decoded.reason, FailureReason)


@SETTINGS
@given(st.text())
def test_any_text_body_decodes_without_raising(body: str) -> None:
    assert_decodes(body)


@SETTINGS
@given(st.binary().map(lambda b: b.decode("utf-8", errors="replace")))
def test_any_bytes_as_text_decode_without_raising(body: str) -> None:
    assert_decodes(body)


@SETTINGS
@given(events)
def test_any_json_object_decodes_without_raising(event: dict[str, object]) -> None:
    assert_decodes(orjson.dumps(event).decode())


@SETTINGS
@given(events)
def test_any_json_object_in_an_sns_envelope_decodes_without_raising(
    event: dict[str, object],
) -> None:
    envelope = {
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": orjson.dumps(event).decode(),
    }
    assert_decodes(orjson.dumps(envelope).decode())


@SETTINGS
@given(timestamp_texts)
@example("0001-01-01T00:30:00+01:00")  # before year 1 once in UTC
@example("9999-12-31T23:30:00-01:00")  # after year 9999 once in UTC
def test_any_event_time_decodes_without_raising(stamp: object) -> None:
    event = {"appsflyer_id": "a", "event_name": "e", "event_time": stamp}
    decoded = decode_message(received(orjson.dumps(event).decode()), MAPPING)
    assert isinstance(decoded, MappedRow | DeadLetter)
    if isinstance(decoded, MappedRow):
        value = decoded.values[[c.name for c in MAPPING.columns].index("event_time")]
        assert isinstance(value, datetime)
        assert value.tzinfo is None


@st.composite
def decoded_items(draw: st.DrawFn) -> list[MappedRow | DeadLetter | Ignored]:
    count = draw(st.integers(min_value=0, max_value=40))
    keys = draw(st.lists(st.sampled_from("abcdef"), min_size=count, max_size=count))
    kinds = draw(st.lists(st.sampled_from("rdi"), min_size=count, max_size=count))
    bodies = draw(st.lists(st.text(max_size=20), min_size=count, max_size=count))
    items: list[MappedRow | DeadLetter | Ignored] = []
    for n, (key, kind, body) in enumerate(zip(keys, kinds, bodies, strict=True)):
        message = received(body, n)
        if kind == "r":
            items.append(MappedRow(message, key, ()))
        elif kind == "d":
            items.append(DeadLetter(message, FailureReason.INVALID_JSON, "x"))
        else:
            items.append(Ignored(message, "s3:TestEvent"))
    return items


@SETTINGS
@given(decoded_items(), st.lists(st.floats(min_value=0, max_value=100), min_size=1))
def test_batch_accounts_for_every_message(
    items: list[MappedRow | DeadLetter | Ignored], times: list[float]
) -> None:
    batch = Batch(opened_at=-1.0)
    policy = FlushPolicy(max_rows=10**6, max_bytes=10**9, max_age=1e6)
    clock = sorted(times)
    for n, item in enumerate(items):
        batch.add(item, clock[min(n, len(clock) - 1)])
    accounted = (
        len(batch.rows)
        + len(batch.in_batch_duplicates)
        + len(batch.dead_letters)
        + len(batch.ignored)
    )
    assert len(batch.messages) == accounted == len(items)
    assert batch.messages == [item.message for item in items]
    assert batch.size_bytes == sum(len(item.message.body) for item in items)
    assert set(batch.rows) == {i.dedupe_key for i in items if isinstance(i, MappedRow)}
    if items:
        assert batch.opened_at == clock[0]
        assert policy.due(batch, clock[0]) is None
    else:
        assert policy.due(batch, 10**9) is None


@SETTINGS
@given(events)
def test_same_event_same_key_whatever_the_formatting(event: dict[str, object]) -> None:
    compact = orjson.dumps(event).decode()
    pretty = orjson.dumps(dict(reversed(list(event.items()))), option=orjson.OPT_INDENT_2).decode()
    one = decode_message(received(compact), MAPPING)
    two = decode_message(received(pretty), MAPPING)
    assert type(one) is type(two)
    if isinstance(one, MappedRow) and isinstance(two, MappedRow):
        assert one.dedupe_key == two.dedupe_key
        assert one.values[:-1] == two.values[:-1]  # all but the raw text
