"""Hostile input through the whole per-message path: decode -> convert -> map -> key.

The one property: every message becomes a row, a dead letter with a reason, or nothing to do;
nothing raises. And the dedupe key: distinct events never share one, the same event spaced or
ordered differently always does.
"""

from __future__ import annotations

import contextlib
import random
from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.canonical import exact_number, exact_tree, may_be_inexact
from sluice.convert import to_decimal
from sluice.decode import decode_message
from sluice.errors import FailureReason, MessageError
from sluice.mapping import load_mapping, parse_mapping
from sluice.model import DeadLetter, Ignored, MappedRow, ReceivedMessage
from sluice.sinks.sql import REDSHIFT_MAX_VARCHAR

MAPPING = load_mapping(None, "t")
REDSHIFT_MAPPING = MAPPING.with_text_limit(REDSHIFT_MAX_VARCHAR)
BY_ID = parse_mapping(
    'dedupe_key = ["id"]\n[[columns]]\nname = "id"\ntype = "text"\n', "t", "test mapping"
)
GOOD = {"appsflyer_id": "a-1", "event_name": "af_purchase", "event_time": "2026-11-27 10:00:00"}
ORJSON_MAX_DEPTH = 1024
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def received(body: str) -> ReceivedMessage:
    return ReceivedMessage("m-1", "m-1#1", body, 1, 1_714_566_896_000)


def decoded(body: str, mapping: object = MAPPING) -> MappedRow | DeadLetter | Ignored:
    result = decode_message(received(body), mapping)  # type: ignore[arg-type]
    assert isinstance(result, MappedRow | DeadLetter | Ignored)
    if isinstance(result, DeadLetter):
        assert isinstance(result.reason, FailureReason)
        assert result.detail
    return result


def with_fields(**fields: object) -> str:
    return orjson.dumps(GOOD | fields).decode()


def nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


# -- the three inputs that crashed every worker ------------------------------------------------


def test_a_decimal_exponent_past_the_context_is_out_of_range_not_a_crash() -> None:
    result = decoded(with_fields(event_revenue="1e1000000"))
    assert isinstance(result, DeadLetter)
    assert result.reason is FailureReason.OUT_OF_RANGE


@pytest.mark.parametrize("depth", [253, 254, 255, 500, ORJSON_MAX_DEPTH - 1])
def test_an_unknown_field_nested_deeper_than_orjson_writes_still_loads(depth: int) -> None:
    body = with_fields()[:-1] + f',"deep":{nested(depth)}}}'
    result = decoded(body)
    assert isinstance(result, MappedRow)
    assert result.values[-1] == body  # the raw event is kept as sent


def test_deep_nesting_with_a_nul_is_invalid_character_not_a_recursion_error() -> None:
    leaf = '"a\\u0000"'
    body = with_fields()[:-1] + f',"deep":{nested(500, leaf)}}}'
    result = decoded(body)
    assert isinstance(result, DeadLetter)
    assert result.reason is FailureReason.INVALID_CHARACTER


def test_nesting_past_the_parsers_limit_is_invalid_json() -> None:
    result = decoded(with_fields()[:-1] + f',"deep":{nested(ORJSON_MAX_DEPTH + 5)}}}')
    assert isinstance(result, DeadLetter)
    assert result.reason is FailureReason.INVALID_JSON


def test_a_step_that_raises_anything_becomes_internal_error_naming_the_type() -> None:
    broken = load_mapping(None, "t")

    def explode(value: object, column: str) -> object:
        raise ZeroDivisionError("secret value 42")

    plan = tuple(
        type(step)(step.name, step.key, step.path, explode, step.nullable, step.empty_is_null)
        for step in broken._plan
    )
    object.__setattr__(broken, "_plan", plan)
    result = decoded(with_fields(), broken)
    assert isinstance(result, DeadLetter)
    assert result.reason is FailureReason.INTERNAL_ERROR
    assert result.detail == "ZeroDivisionError"  # the type, never the text


# -- details name the column and the type, never the value ----------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"event_revenue": "SECRETVALUE"},
        {"event_revenue": "1e999999999"},
        {"event_revenue_usd": ["SECRETVALUE"]},
        {"is_retargeting": "SECRETVALUE"},
        {"event_time": "SECRETVALUE"},
        {"event_time": 10**18},
        {"install_time": "9999-12-31T23:59:59-05:00"},
        {"appsflyer_id": {"SECRETVALUE": 1}},
    ],
)
def test_a_refusal_detail_holds_no_part_of_the_value(fields: dict[str, object]) -> None:
    result = decoded(with_fields(**fields))
    assert isinstance(result, DeadLetter)
    column = next(iter(fields))
    assert result.detail.startswith(column)
    for text in ("SECRETVALUE", "999999999", "9999-12-31", "10000000"):
        assert text not in result.detail


# -- exact numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        ("0.30000000000000001", "0.3"),
        ("18446744073709551616", "18446744073709551617"),
        ("-9223372036854775809", "-9223372036854775810"),
        ("1.5e-320", "1.6e-320"),
        ("1e308", "1.0000000000000001e308"),
    ],
)
def test_events_differing_only_in_a_number_a_double_cannot_hold_get_two_keys(
    first: str, second: str
) -> None:
    one = decoded(with_fields()[:-1] + f',"n":{first}}}')
    two = decoded(with_fields()[:-1] + f',"n":{second}}}')
    assert isinstance(one, MappedRow)
    assert isinstance(two, MappedRow)
    assert one.dedupe_key != two.dedupe_key


def test_a_dedupe_path_holding_a_big_number_keeps_every_digit() -> None:
    one = BY_ID.dedupe_key({"id": 1.2345678901234568e29}, '{"id":123456789012345678901234567890}')
    two = BY_ID.dedupe_key({"id": 1.2345678901234568e29}, '{"id":123456789012345678901234567891}')
    assert one != two


def test_a_dedupe_path_holding_an_object_ignores_its_key_order() -> None:
    one = BY_ID.dedupe_key({"id": {"a": 1, "b": 2}}, '{"id":{"a":1,"b":2}}')
    two = BY_ID.dedupe_key({"id": {"b": 2, "a": 1}}, '{"id": {"b": 2, "a": 1}}')
    assert one == two


def test_ordinary_events_keep_the_key_they_always_had() -> None:
    """Keys already in a warehouse must match their redeliveries after an upgrade."""
    import hashlib

    body = with_fields(event_revenue=1.25, n=12345678901234)
    expected = hashlib.sha256(orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS))
    result = decoded(body)
    assert isinstance(result, MappedRow)
    assert result.dedupe_key == expected.hexdigest()


def test_long_digit_runs_inside_strings_do_not_leave_the_fast_path() -> None:
    assert not may_be_inexact('{"click_id":"12345678901234567890123","n":1}')
    assert may_be_inexact('{"click_id":"x","n":12345678901234567890123}')


@pytest.mark.parametrize(
    ("token", "exact"),
    [
        ("0", "0"),
        ("-0.0", "0"),
        ("1", "1e0"),
        ("1.0", "1e0"),
        ("10e-1", "1e0"),
        ("1500", "15e2"),
        ("-0.00012", "-12e-5"),
        ("1e1000000", "1e1000000"),
    ],
)
def test_exact_number_text(token: str, exact: str) -> None:
    assert exact_number(token) == exact


# -- properties ------------------------------------------------------------------------------

number_texts = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,2})?\Z"
) | st.integers(-(10**40), 10**40).map(str)
leaves = (
    st.none().map(lambda _: ("lit", "null"))
    | st.booleans().map(lambda b: ("lit", "true" if b else "false"))
    | number_texts.map(lambda t: ("num", t))
    | st.text(max_size=12).map(lambda t: ("str", t))
)
trees = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda items: ("arr", items))
        | st.dictionaries(st.text(max_size=6), inner, max_size=4).map(lambda d: ("obj", d))
    ),
    max_leaves=16,
)
events_ = st.dictionaries(st.text(max_size=6), trees, min_size=1, max_size=5).map(
    lambda d: ("obj", d)
)


def render(tree: tuple[str, object], rng: random.Random) -> str:
    """JSON text for ``tree``: numbers as written, keys in a random order, random spacing."""

    def space() -> str:
        return rng.choice(["", "", " ", "\n  ", "\t"])

    kind, value = tree
    if kind in ("lit", "num"):
        return str(value)
    if kind == "str":
        return orjson.dumps(value).decode()
    if kind == "arr":
        assert isinstance(value, list)
        return "[" + ",".join(space() + render(v, rng) for v in value) + space() + "]"
    assert isinstance(value, dict)
    keys = list(value)
    rng.shuffle(keys)
    parts = [f"{space()}{orjson.dumps(k).decode()}{space()}:{render(value[k], rng)}" for k in keys]
    return "{" + ",".join(parts) + space() + "}"


def comparable(tree: tuple[str, object]) -> object:
    """A value that is equal exactly when two trees are the same JSON value."""
    kind, value = tree
    if kind == "num":
        return ("num", Decimal(str(value)))
    if kind == "arr":
        assert isinstance(value, list)
        return ("arr", tuple(comparable(v) for v in value))
    if kind == "obj":
        assert isinstance(value, dict)
        return ("obj", frozenset((k, comparable(v)) for k, v in value.items()))
    return (kind, value)


def key_of(text: str) -> str | None:
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # a number past a double's range: refused as invalid_json, never keyed
    return MAPPING.dedupe_key(event, text)


@SETTINGS
@given(events_, st.randoms(use_true_random=False), st.randoms(use_true_random=False))
def test_the_same_event_in_any_key_order_and_spacing_has_one_key(
    tree: tuple[str, object], first: random.Random, second: random.Random
) -> None:
    one, two = key_of(render(tree, first)), key_of(render(tree, second))
    assert one == two


@SETTINGS
@given(events_, events_)
@example(
    ("obj", {"n": ("num", "123456789012345678901234567890")}),
    ("obj", {"n": ("num", "123456789012345678901234567891")}),
)
@example(("obj", {"n": ("num", "0.30000000000000001")}), ("obj", {"n": ("num", "0.3")}))
def test_distinct_events_never_share_a_key(
    one: tuple[str, object], two: tuple[str, object]
) -> None:
    rng = random.Random(0)
    keys = key_of(render(one, rng)), key_of(render(two, rng))
    if None in keys or comparable(one) == comparable(two):
        return
    assert keys[0] != keys[1]


@SETTINGS
@given(events_, st.data())
def test_changing_one_digit_of_any_number_changes_the_key(
    tree: tuple[str, object], data: st.DataObject
) -> None:
    text = render(tree, random.Random(0))
    numbers = [m for m in _digit_positions(tree)]
    if not numbers:
        return
    mutated = _with_one_digit_changed(tree, data.draw(st.sampled_from(numbers)))
    before, after = key_of(text), key_of(render(mutated, random.Random(0)))
    if before is None or after is None:
        return
    assert before != after


def _digit_positions(tree: tuple[str, object], path: tuple[object, ...] = ()) -> list[object]:
    kind, value = tree
    if kind == "num":
        return [path]
    if kind == "arr":
        assert isinstance(value, list)
        return [p for i, v in enumerate(value) for p in _digit_positions(v, (*path, i))]
    if kind == "obj":
        assert isinstance(value, dict)
        return [p for k, v in value.items() for p in _digit_positions(v, (*path, k))]
    return []


def _with_one_digit_changed(tree: tuple[str, object], path: object) -> tuple[str, object]:
    assert isinstance(path, tuple)
    kind, value = tree
    if not path:
        mantissa, _, exponent = str(value).lower().partition("e")
        last = len(mantissa) - 1
        digit = "1" if mantissa[last] != "1" else "2"
        changed = mantissa[:last] + digit + (("e" + exponent) if exponent else "")
        return ("num", changed)
    head, rest = path[0], path[1:]
    if kind == "arr":
        assert isinstance(value, list)
        copy = list(value)
        copy[head] = _with_one_digit_changed(copy[head], rest)  # type: ignore[index]
        return ("arr", copy)
    assert isinstance(value, dict)
    return ("obj", value | {head: _with_one_digit_changed(value[head], rest)})


def test_exact_tree_reads_what_orjson_reads() -> None:
    text = '{"a": [1, 2.5, {"b": null}], "a2": "x\\u0041", "t": true, "a2": "last"}'
    assert exact_tree(text) == {
        "a": ["1e0", "25e-1", {"b": None}],
        "a2": "last",
        "t": True,
    }


# -- the whole path, fed adversarial JSON ----------------------------------------------------

hostile_numbers = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,60}(\.[0-9]{1,60})?([eE][+-]?[0-9]{1,9})?\Z"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e1000000", "-1e-1000000", "1e400"]),
)
hostile_strings = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\\u0000", "\\ud800", "\\udc00x", "a\\u0000b", "\\\\", '\\"']).map(
        lambda s: f"RAW:{s}"
    ),
    st.integers(0, 200_000).map(lambda n: "x" * n),
)
hostile_values = st.recursive(
    st.one_of(st.none(), st.booleans(), hostile_numbers.map(lambda t: ("num", t)), hostile_strings),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
mapped_names = [c.path[0] for c in MAPPING.columns]


def hostile_text(value: object) -> str:
    if isinstance(value, tuple):
        return str(value[1])
    if isinstance(value, str) and value.startswith("RAW:"):
        return '"' + value[4:] + '"'
    if isinstance(value, list):
        return "[" + ",".join(hostile_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{orjson.dumps(k).decode()}:{hostile_text(v)}" for k, v in value.items())
            + "}"
        )
    return orjson.dumps(value).decode()


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    fields = draw(
        st.dictionaries(
            st.sampled_from([*mapped_names, "deep", "extra", "appsflyer_id"]),
            hostile_values,
            max_size=6,
        )
    )
    parts = [f"{orjson.dumps(k).decode()}:{hostile_text(v)}" for k, v in fields.items()]
    if draw(st.booleans()):
        parts += [f"{orjson.dumps(k).decode()}:{orjson.dumps(v).decode()}" for k, v in GOOD.items()]
    if draw(st.booleans()):  # a duplicate key, the second spelling wins in orjson
        parts.append('"event_name":"dup"')
    depth = draw(st.sampled_from([0, 0, 1, 253, 254, 255, 999, 1023, 1024, 1025]))
    leaf = draw(
        st.sampled_from(["0", '"\\u0000"', "1e999", "123456789012345678901234567890", "{}"])
    )
    if depth:
        parts.append('"deep":' + nested(depth, leaf))
    random.Random(draw(st.integers(0, 2**16))).shuffle(parts)
    body = "{" + ",".join(parts) + "}"
    wrap = draw(st.sampled_from(["raw", "raw", "sns", "cut"]))
    if wrap == "sns":
        return orjson.dumps(
            {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:0:t", "Message": body}
        ).decode()
    if wrap == "cut":
        return body[: draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_bodies())
@example('{"event_revenue":"1e1000000"}')
@example('{"x":' + nested(600, '"\\u0000"') + "}")
def test_every_hostile_message_becomes_a_row_a_dead_letter_or_nothing(body: str) -> None:
    for mapping in (MAPPING, REDSHIFT_MAPPING, BY_ID):
        result = decoded(body, mapping)
        if isinstance(result, DeadLetter):
            assert result.reason is not FailureReason.INTERNAL_ERROR, result.detail


@given(st.text(max_size=60) | hostile_numbers)
@settings(max_examples=300, deadline=None)
def test_the_decimal_converter_never_raises_anything_but_a_refusal(value: str) -> None:
    with contextlib.suppress(MessageError):
        to_decimal(value, "c")
