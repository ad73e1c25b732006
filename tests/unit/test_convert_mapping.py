"""Converters and mappings: AppsFlyer values in, typed column values (or a reason) out."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from sluice.convert import (
    ColumnType,
    to_bigint,
    to_boolean,
    to_decimal,
    to_double,
    to_json,
    to_text,
    to_timestamp,
)
from sluice.decode import decode_message
from sluice.errors import ConfigError, FailureReason, MessageError
from sluice.mapping import (
    DEDUPE_KEY,
    MESSAGE_ID,
    RAW_EVENT,
    SENT_AT,
    TableMapping,
    load_mapping,
    parse_mapping,
)
from sluice.model import DeadLetter, MappedRow, ReceivedMessage

MAPPING = load_mapping(None, "events")
NAMES = [c.name for c in MAPPING.load_columns]
NOON = datetime(2024, 5, 1, 12, 34, 56)  # 1714566896 seconds since the epoch
BASE: dict[str, object] = {
    "appsflyer_id": "1700000000000-1234567",
    "event_name": "af_purchase",
    "event_time": "2024-05-01 12:34:56.789",
}


def message(body: str = "{}", sent_ms: int = 1_714_566_896_000) -> ReceivedMessage:
    return ReceivedMessage("mid-1", "mid-1#1", body, 1, sent_ms)


def row_for(event: dict[str, object], mapping: TableMapping = MAPPING) -> dict[str, object]:
    text = orjson.dumps(event).decode()
    mapped = mapping.map_event(event, text, message(text))
    return dict(zip([c.name for c in mapping.load_columns], mapped.values, strict=True))


def refusal(event: dict[str, object], mapping: TableMapping = MAPPING) -> MessageError:
    with pytest.raises(MessageError) as info:
        mapping.map_event(event, orjson.dumps(event).decode(), message())
    return info.value


def key(event: dict[str, object], mapping: TableMapping | None = None) -> str:
    """The dedupe key of ``event`` as sent in orjson's spelling."""
    return (mapping or MAPPING).dedupe_key(event, orjson.dumps(event).decode())


def with_(**fields: object) -> dict[str, object]:
    return BASE | fields


# -- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01 12:34:56.789", NOON.replace(microsecond=789_000)),
        ("2024-05-01 12:34:56", NOON),
        ("2024-05-01T12:34:56Z", NOON),
        ("2024-05-01T12:34:56.5Z", NOON.replace(microsecond=500_000)),
        ("2024-05-01T14:34:56+02:00", NOON),
        ("2024-05-01T07:34:56-05:00", NOON),
        ("2024-05-02T00:04:56+11:30", NOON),
        (" 2024-05-01 12:34:56 ", NOON),
        (1_714_566_896, NOON),
        (1_714_566_896.25, NOON.replace(microsecond=250_000)),
        (1_714_566_896_789, NOON.replace(microsecond=789_000)),
    ],
)
def test_timestamps_become_naive_utc(value: object, expected: datetime) -> None:
    result = to_timestamp(value, "event_time")
    assert isinstance(result, datetime)
    assert result.tzinfo is None
    assert result == expected


@pytest.mark.parametrize("value", ["yesterday at noon", "2024-13-01 00:00:00", True, [1], {}])
def test_bad_timestamps_are_wrong_type(value: object) -> None:
    with pytest.raises(MessageError) as info:
        to_timestamp(value, "event_time")
    assert info.value.reason is FailureReason.WRONG_TYPE
    assert "event_time" in info.value.detail


def test_epoch_far_out_of_range_is_out_of_range() -> None:
    with pytest.raises(MessageError) as info:
        to_timestamp(10**22, "event_time")
    assert info.value.reason is FailureReason.OUT_OF_RANGE


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_offset_timestamp_that_leaves_the_calendar_is_refused_not_raised(value: str) -> None:
    # Converting to UTC moves these before year 1 / after year 9999: datetime.astimezone
    # raises OverflowError, which must become a MessageError for this message alone.
    decoded = decode_message(message(orjson.dumps(with_(event_time=value)).decode()), MAPPING)
    assert isinstance(decoded, DeadLetter)
    assert decoded.reason in {FailureReason.OUT_OF_RANGE, FailureReason.WRONG_TYPE}


def test_mapped_timestamps_and_sent_at() -> None:
    row = row_for(with_(install_time="2024-05-01T12:34:56Z"))
    assert row["event_time"] == NOON.replace(microsecond=789_000)
    assert row["install_time"] == NOON
    assert row[SENT_AT] == NOON


def test_sent_at_is_none_without_a_sent_timestamp() -> None:
    text = orjson.dumps(BASE).decode()
    mapped = MAPPING.map_event(BASE, text, message(text, sent_ms=0))
    assert mapped.values[NAMES.index(SENT_AT)] is None


# -- booleans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("FALSE", False),
        (" false ", False),
        ("1", True),
        ("0", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_from_strings_and_numbers(value: object, expected: bool) -> None:
    assert to_boolean(value, "is_retargeting") is expected
    assert row_for(with_(is_retargeting=value))["is_retargeting"] is expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, 1.0, [True], {"a": 1}])
def test_other_booleans_are_wrong_type(value: object) -> None:
    error = refusal(with_(is_retargeting=value))
    assert error.reason is FailureReason.WRONG_TYPE
    assert "is_retargeting" in error.detail


def test_empty_string_boolean_is_null() -> None:
    assert row_for(with_(is_retargeting=""))["is_retargeting"] is None


# -- event_value (json) ----------------------------------------------------------------------


def test_event_value_as_a_json_string_is_stored_as_that_json() -> None:
    value = '{"af_revenue": 1.99, "af_content_id": "sku-1"}'
    stored = row_for(with_(event_value=value))["event_value"]
    assert isinstance(stored, str)
    assert orjson.loads(stored) == {"af_revenue": 1.99, "af_content_id": "sku-1"}


def test_event_value_as_an_object_is_serialised() -> None:
    stored = row_for(with_(event_value={"af_revenue": 1.99, "n": [1, 2]}))["event_value"]
    assert isinstance(stored, str)
    assert orjson.loads(stored) == {"af_revenue": 1.99, "n": [1, 2]}


def test_event_value_empty_string_is_null() -> None:
    assert row_for(with_(event_value=""))["event_value"] is None
    assert row_for(BASE)["event_value"] is None


def test_event_value_plain_or_broken_string_is_kept_as_a_json_string() -> None:
    assert to_json("hello", "event_value") == '"hello"'
    assert orjson.loads(str(to_json("{oops", "event_value"))) == "{oops"
    assert to_json(" [1,2] ", "event_value") == "[1,2]"


# -- decimals and numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.99", Decimal("1.990000")),
        (1.99, Decimal("1.990000")),
        (5, Decimal("5.000000")),
        ("1.2345674", Decimal("1.234567")),
        ("1.2345676", Decimal("1.234568")),
        ("99999999999999.999999", Decimal("99999999999999.999999")),
        ("-3", Decimal("-3.000000")),
    ],
)
def test_decimals_are_quantized_to_six_places(value: object, expected: Decimal) -> None:
    result = to_decimal(value, "event_revenue")
    assert result == expected
    assert isinstance(result, Decimal)
    assert result.as_tuple().exponent == -6


@pytest.mark.parametrize("value", ["100000000000000", 1e14, "-1e14", "NaN", "Infinity"])
def test_decimals_too_large_or_not_finite_are_out_of_range(value: object) -> None:
    error = refusal(with_(event_revenue=value))
    assert error.reason is FailureReason.OUT_OF_RANGE
    assert "event_revenue" in error.detail


@pytest.mark.parametrize("value", ["abc", True, {"amount": "1.99"}, [1]])
def test_decimals_of_the_wrong_type(value: object) -> None:
    error = refusal(with_(event_revenue_usd=value))
    assert error.reason is FailureReason.WRONG_TYPE
    assert "event_revenue_usd" in error.detail


def test_mapped_revenue() -> None:
    row = row_for(with_(event_revenue="1.99", event_revenue_usd=2.1293))
    assert row["event_revenue"] == Decimal("1.990000")
    assert row["event_revenue_usd"] == Decimal("2.129300")


def test_bigint_and_double() -> None:
    assert to_bigint("42", "n") == 42
    assert to_bigint(7.0, "n") == 7
    assert to_bigint(2**63 - 1, "n") == 2**63 - 1
    for bad, reason in [
        (2**63, FailureReason.OUT_OF_RANGE),
        (1.5, FailureReason.WRONG_TYPE),
        (True, FailureReason.WRONG_TYPE),
        ("4x", FailureReason.WRONG_TYPE),
    ]:
        with pytest.raises(MessageError) as info:
            to_bigint(bad, "n")
        assert info.value.reason is reason
    assert to_double("2.5", "d") == 2.5
    with pytest.raises(MessageError) as info:
        to_double("inf", "d")
    assert info.value.reason is FailureReason.OUT_OF_RANGE


# -- text ------------------------------------------------------------------------------------


def test_text_length_is_counted_in_utf8_bytes() -> None:
    convert = to_text(8)
    assert convert("abcdefgh", "c") == "abcdefgh"  # 8 bytes
    assert convert("€€ab", "c") == "€€ab"  # 3 + 3 + 2 = 8 bytes
    assert convert("😀😀", "c") == "😀😀"  # 4 + 4 = 8 bytes
    for too_long in ["abcdefghi", "€€€", "😀😀a"]:  # 9 bytes each, however few characters
        with pytest.raises(MessageError) as info:
            convert(too_long, "c")
        assert info.value.reason is FailureReason.VALUE_TOO_LONG
        assert "9 UTF-8 bytes" in info.value.detail


def test_mapped_text_length_in_bytes() -> None:
    assert row_for(with_(country_code="€€"))["country_code"] == "€€"  # 6 bytes of 8
    error = refusal(with_(country_code="€€€"))  # 3 characters, 9 bytes
    assert error.reason is FailureReason.VALUE_TOO_LONG
    assert "country_code" in error.detail
    error = refusal(with_(appsflyer_id="x" * 129))
    assert error.reason is FailureReason.VALUE_TOO_LONG


def test_text_from_numbers_and_booleans() -> None:
    row = row_for(with_(os_version=17, sdk_version=True, campaign=1.5))
    assert row["os_version"] == "17"
    assert row["sdk_version"] == "true"
    assert row["campaign"] == "1.5"


def test_empty_string_text_is_kept() -> None:
    assert row_for(with_(af_channel=""))["af_channel"] == ""


@pytest.mark.parametrize("value", [{"a": 1}, ["x"]])
def test_object_for_a_text_column_is_wrong_type_naming_the_column(value: object) -> None:
    error = refusal(with_(media_source=value))
    assert error.reason is FailureReason.WRONG_TYPE
    assert error.detail.startswith("media_source:")


# -- required, raw, dedupe -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["appsflyer_id", "event_name", "event_time"])
def test_missing_required_field(missing: str) -> None:
    event = {k: v for k, v in BASE.items() if k != missing}
    error = refusal(event)
    assert error.reason is FailureReason.MISSING_REQUIRED
    assert missing in error.detail


def test_null_required_field_is_missing() -> None:
    assert refusal(with_(event_name=None)).reason is FailureReason.MISSING_REQUIRED
    assert refusal(with_(event_time="")).reason is FailureReason.MISSING_REQUIRED


def test_unknown_fields_are_kept_in_the_raw_text() -> None:
    event = with_(device_model="iPhone15,2", af_sub1={"nested": [1, 2]})
    row = row_for(event)
    raw = row[RAW_EVENT]
    assert isinstance(raw, str)
    assert orjson.loads(raw) == event
    assert "device_model" not in NAMES


def test_system_columns_come_last_in_order() -> None:
    row = row_for(BASE)
    assert NAMES[-4:] == [DEDUPE_KEY, MESSAGE_ID, SENT_AT, RAW_EVENT]
    assert row[MESSAGE_ID] == "mid-1"
    assert isinstance(row[DEDUPE_KEY], str)
    assert len(str(row[DEDUPE_KEY])) == 64


def test_dedupe_key_ignores_key_order_and_whitespace() -> None:
    first = '{"appsflyer_id":"a","event_name":"install","event_time":"2024-05-01 12:00:00"}'
    second = (
        '{ "event_time" : "2024-05-01 12:00:00",\n'
        '  "event_name" : "install",\n  "appsflyer_id" : "a" }'
    )
    one = decode_message(message(first), MAPPING)
    two = decode_message(message(second), MAPPING)
    assert isinstance(one, MappedRow)
    assert isinstance(two, MappedRow)
    assert one.dedupe_key == two.dedupe_key


def test_dedupe_key_differs_for_different_events() -> None:
    keys = {
        key(BASE),
        key(with_(event_name="install")),
        key(with_(event_time="2024-05-01 12:34:56.790")),
        key(with_(ip="203.0.113.9")),  # unmapped fields count too
    }
    assert len(keys) == 4


CUSTOM = """
dedupe_key = ["id", "meta.source"]

[[columns]]
name = "id"
type = "bigint"
nullable = false

[[columns]]
name = "source"
path = "meta.source"
max_length = 10

[[columns]]
name = "score"
type = "double"
path = ["meta", "score"]
"""


def test_custom_mapping_with_dedupe_paths() -> None:
    mapping = parse_mapping(CUSTOM, "scores", "test mapping")
    assert mapping.table == "scores"
    assert mapping.dedupe_paths == (("id",), ("meta", "source"))
    row = row_for({"id": "7", "meta": {"source": "web", "score": "2.5"}}, mapping)
    assert row["id"] == 7
    assert row["source"] == "web"
    assert row["score"] == 2.5
    same = key({"id": "7", "meta": {"source": "web", "score": 9}, "extra": 1}, mapping)
    assert same == row[DEDUPE_KEY]  # only the dedupe paths count
    assert key({"id": "8", "meta": {"source": "web"}}, mapping) != same
    assert key({"id": "7", "meta": {"source": "ios"}}, mapping) != same
    assert key({"id": 7, "meta": {"source": "web"}}, mapping) != same  # typed values


@pytest.mark.parametrize("event", [{"id": 7}, {"id": 7, "meta": {"source": ""}}])
def test_missing_dedupe_path_is_refused(event: dict[str, object]) -> None:
    mapping = parse_mapping(CUSTOM, "scores", "test mapping")
    assert refusal(event, mapping).reason is FailureReason.MISSING_DEDUPE_KEY


def test_dedupe_key_as_a_single_string(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('dedupe_key = "id"\n[[columns]]\nname = "id"\n')
    mapping = load_mapping(str(path), "t")
    assert mapping.dedupe_paths == (("id",),)
    assert key({"id": "1", "x": 1}, mapping) == key({"id": "1", "x": 2}, mapping)


# -- mapping TOML errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[[columns]]\nname = "a"\ntype = "varchar"\n', "type must be one of"),
        ('[[columns]]\nname = "bad-name"\n', "column name 'bad-name'"),
        ('[[columns]]\nname = "x; DROP TABLE y"\n', "column name"),
        ("[[columns]]\ntype = 'text'\n", "needs a name"),
        ('[[columns]]\nname = "dedupe_key"\n', "reserved"),
        ('[[columns]]\nname = "raw_event"\n', "reserved"),
        ('[[columns]]\nname = "loaded_at"\n', "reserved"),
        ('[[columns]]\nname = "a"\ntype = "bigint"\nmax_length = 5\n', "text columns only"),
        ('[[columns]]\nname = "a"\nmax_length = 0\n', "positive integer"),
        ("columns = []\n", "at least one"),
        ("dedupe_key = []\n", "at least one"),
        ("[[columns]\n", "not valid TOML"),
    ],
)
def test_bad_mappings_are_config_errors(toml: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mapping(toml, "t", "mapping m.toml")
    assert fragment in str(info.value)
    assert "mapping m.toml" in str(info.value)


def test_duplicate_column_is_a_config_error() -> None:
    toml = '[[columns]]\nname = "a"\n[[columns]]\nname = "a"\ntype = "bigint"\n'
    with pytest.raises(ConfigError, match="column\\(s\\) a defined twice"):
        parse_mapping(toml, "t", "mapping m.toml")


def test_column_name_with_a_trailing_newline_is_refused() -> None:
    # Same anchoring problem as in config: `$` matches before a final newline.
    with pytest.raises(ConfigError, match="column name"):
        parse_mapping('[[columns]]\nname = "a\\n"\n', "t", "mapping m.toml")


def test_unreadable_mapping_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SLUICE_MAPPING_FILE"):
        load_mapping(str(tmp_path / "missing.toml"), "t")


def test_mapping_refuses_an_unsafe_table_name() -> None:
    with pytest.raises((ConfigError, ValueError)):
        load_mapping(None, "x; DROP TABLE y")


# -- the default AppsFlyer mapping -----------------------------------------------------------

REQUIRED_APPSFLYER = [
    "appsflyer_id",
    "event_name",
    "event_time",
    "event_value",
    "event_revenue",
    "event_revenue_currency",
    "event_revenue_usd",
    "media_source",
    "campaign",
    "af_channel",
    "platform",
    "app_id",
    "customer_user_id",
    "idfa",
    "idfv",
    "advertising_id",
    "country_code",
    "install_time",
    "os_version",
    "sdk_version",
]


def test_default_mapping_has_the_appsflyer_columns() -> None:
    mapping = load_mapping(None, "appsflyer_events")
    assert mapping.table == "appsflyer_events"
    mapped = [c.name for c in mapping.columns]
    assert set(REQUIRED_APPSFLYER) <= set(mapped)
    # in the documented order, whatever else is added between them
    assert [n for n in mapped if n in REQUIRED_APPSFLYER] == REQUIRED_APPSFLYER
    assert [c.name for c in mapping.load_columns][-4:] == [
        "dedupe_key",
        "message_id",
        "sent_at",
        "raw_event",
    ]
    assert mapping.dedupe_paths == ()


def test_default_mapping_types_and_nullability() -> None:
    by_name = {c.name: c for c in load_mapping(None, "t").load_columns}
    assert {n for n, c in by_name.items() if not c.nullable} == {
        "appsflyer_id",
        "event_name",
        "event_time",
        "dedupe_key",
        "message_id",
        "raw_event",
    }
    assert by_name["event_time"].type is ColumnType.TIMESTAMP
    assert by_name["install_time"].type is ColumnType.TIMESTAMP
    assert by_name["event_value"].type is ColumnType.JSON
    assert by_name["event_revenue"].type is ColumnType.DECIMAL
    assert by_name["event_revenue_usd"].type is ColumnType.DECIMAL
    assert by_name["media_source"].type is ColumnType.TEXT
    assert by_name["dedupe_key"].max_length == 64


def test_default_mapping_with_a_qualified_table() -> None:
    assert load_mapping(None, "analytics.events").table == "analytics.events"


def test_redshift_bounds_unbounded_text_in_utf8_bytes_before_the_load() -> None:
    from sluice.errors import FailureReason, MessageError
    from sluice.mapping import parse_mapping
    from sluice.model import ReceivedMessage

    text = '[[columns]]\nname = "note"\n'
    mapping = parse_mapping(text, "t", "test").with_text_limit(8)
    message = ReceivedMessage("m", "r", "{}", 1, 0)
    assert mapping.map_event({"note": "ééé"}, "{}", message).values[0] == "ééé"  # 6 bytes
    with pytest.raises(MessageError) as caught:
        mapping.map_event({"note": "éééé€"}, "{}", message)  # 11 bytes
    assert caught.value.reason is FailureReason.VALUE_TOO_LONG
