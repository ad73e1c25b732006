"""The planner's notation: counts, rates and durations as the ops guide writes them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.plan.units import parse_count, parse_duration, parse_rate

DAY = 86_400
PER = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3_600, "hour": 3_600, "d": DAY, "day": DAY}
SUFFIX = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "m": 1_000_000, "B": 10**9}


@pytest.mark.parametrize(
    ("raw", "count"),
    [
        ("2.8M", 2_800_000),
        ("600k", 600_000),
        ("1.5B", 1_500_000_000),
        ("2,800,000", 2_800_000),
        ("2_800_000", 2_800_000),
        (" 42 ", 42),
        ("0", 0),
        (".5k", 500),
    ],
)
def test_counts_in_the_guides_notation(raw: str, count: int) -> None:
    assert parse_count(raw) == count


@pytest.mark.parametrize(
    ("raw", "per_second"),
    [
        ("600k/day", 600_000 / DAY),
        ("10/s", 10),
        ("36000/h", 10),
        ("1.2M/d", 1_200_000 / DAY),
        ("7", 7),
        ("25,000/h", 25_000 / 3_600),
        ("600000/day", 600_000 / DAY),
    ],
)
def test_rates_in_the_guides_notation(raw: str, per_second: float) -> None:
    assert parse_rate(raw) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.5", "whole number"),
        ("2,80", "count such as"),
        ("1e9", "count such as"),
        ("-5", "count such as"),
        ("2.8X", "count such as"),
        ("9" * 40, "count such as"),
    ],
)
def test_bad_counts_say_what_is_expected(raw: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_count(raw)


@given(st.integers(min_value=0, max_value=10**15))
def test_any_whole_number_reads_back_plain_or_grouped(n: int) -> None:
    assert parse_count(str(n)) == n
    assert parse_count(f"{n:,}") == n


@given(
    st.integers(min_value=0, max_value=999_999),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(sorted(SUFFIX)),
)
def test_a_decimal_with_a_suffix_is_exact(whole: int, tenth: int, suffix: str) -> None:
    text = f"{whole}.{tenth}{suffix}"
    scaled = (whole * 10 + tenth) * SUFFIX[suffix]
    if scaled % 10:
        with pytest.raises(ValueError, match="whole number"):
            parse_count(text)
    else:
        assert parse_count(text) == scaled // 10


@given(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(["", "k", "M"]),
    st.sampled_from(sorted(PER)),
)
def test_a_rate_is_its_count_over_its_unit(n: int, suffix: str, unit: str) -> None:
    factor = {"": 1, "k": 1_000, "M": 1_000_000}[suffix]
    assert parse_rate(f"{n}{suffix}/{unit}") == pytest.approx(n * factor / PER[unit])
    assert parse_rate(f"{n}{suffix} / {unit.upper()}") == pytest.approx(n * factor / PER[unit])


@given(st.text(max_size=40))
def test_any_text_is_a_value_or_one_value_error(raw: str) -> None:
    for parse in (parse_count, parse_rate, parse_duration):
        try:
            value = parse(raw)
        except ValueError as exc:
            assert repr(raw) in str(exc) or "whole number" in str(exc)
        else:
            assert math.isfinite(value) and value >= 0
