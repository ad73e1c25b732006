"""Whose fault is a refused row: the row's, or the table's? Policy, signatures, the Loader.

The Loader runs here against a fake warehouse that refuses rows by a rule the test sets
(pure logic: which loads are tried and what is dead-lettered); the real warehouses are in
tests/integration/test_table_change.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg.errors
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from sluice.errors import SchemaError
from sluice.loading import Loader
from sluice.model import CircuitState, LoadResult, MappedRow, ReceivedMessage
from sluice.observe.stats import WorkerCounters
from sluice.policies import CircuitBreaker, ExponentialBackoff, RejectionPolicy
from sluice.sinks.base import RowsRejectedError, error_signature
from sluice.sinks.postgres import translate

TYPE_CHANGED = "22P02 invalid input syntax for type integer: ?"
OUT_OF_RANGE = "22003 numeric field overflow"

# -- the policy, on fake signatures ----------------------------------------------------------

POLICY = RejectionPolicy(probes=3)


def test_suspects_the_table_once_the_first_rows_fail_alone_the_same_way() -> None:
    assert not POLICY.suspects_table(rows=300, loaded=0, lone=["a"])
    assert not POLICY.suspects_table(rows=300, loaded=0, lone=["a", "a"])
    assert POLICY.suspects_table(rows=300, loaded=0, lone=["a", "a", "a"])


def test_never_suspects_once_anything_loaded_or_errors_differ() -> None:
    assert not POLICY.suspects_table(rows=300, loaded=1, lone=["a", "a", "a"])
    assert not POLICY.suspects_table(rows=300, loaded=0, lone=["a", "b", "a"])


def test_small_batches_are_suspected_when_every_row_failed_alone() -> None:
    assert POLICY.suspects_table(rows=2, loaded=0, lone=["a", "a"])
    assert POLICY.suspects_table(rows=1, loaded=0, lone=["a"])


def test_blames_the_table_when_the_rest_fails_the_same_way() -> None:
    evidence = {"rows": 300, "loaded": 0, "lone": ["a"] * 3, "active": None}
    assert POLICY.blames_table(**evidence, remainder="a")  # type: ignore[arg-type]
    assert not POLICY.blames_table(**evidence, remainder="b")  # type: ignore[arg-type]
    assert not POLICY.blames_table(**evidence | {"loaded": 1}, remainder=None)  # type: ignore[arg-type]


def test_a_batch_refused_row_by_row_blames_the_table_but_one_row_alone_does_not() -> None:
    assert POLICY.blames_table(rows=2, loaded=0, lone=["a", "a"], remainder=None, active=None)
    assert not POLICY.blames_table(rows=2, loaded=0, lone=["a", "b"], remainder=None, active=None)
    assert not POLICY.blames_table(rows=1, loaded=0, lone=["a"], remainder=None, active=None)
    # ...unless other batches are being refused the same way right now.
    assert POLICY.blames_table(rows=1, loaded=0, lone=["a"], remainder=None, active="a")
    assert not POLICY.blames_table(rows=1, loaded=0, lone=["a"], remainder=None, active="b")


# -- signatures ------------------------------------------------------------------------------

values = st.one_of(
    st.integers().map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(alphabet=st.characters(blacklist_characters="\"'"), max_size=30).map(
        lambda t: f'"{t}"'
    ),
    st.text(max_size=30).map(lambda t: "'" + t.replace("'", "''") + "'"),
)


@given(values, values)
def test_signatures_ignore_the_value_quoted_in_an_error(first: str, second: str) -> None:
    template = "invalid input syntax for type integer: {}"
    one = error_signature(template.format(first), "22P02")
    assert one == error_signature(template.format(second), "22P02") == TYPE_CHANGED


def test_signatures_keep_the_code_and_the_kind_of_error() -> None:
    assert error_signature("value too long for type character varying(2)", "22001") == (
        "22001 value too long for type character varying(?)"
    )
    assert error_signature("x", "22001") != error_signature("x", "22003")


def test_postgres_rejections_carry_sqlstate_and_a_signature_without_the_value() -> None:
    exc = psycopg.errors.InvalidTextRepresentation('invalid input syntax for type integer: "ios"')
    error = translate(exc, commit_sent=False, secret=None)
    assert isinstance(error, RowsRejectedError)
    assert error.signature == TYPE_CHANGED
    assert "ios" in str(error) and "ios" not in error.signature


# -- the Loader, on a fake warehouse ---------------------------------------------------------


def row(n: int) -> MappedRow:
    return MappedRow(ReceivedMessage(f"m-{n}", f"r-{n}", "{}", 1, 0), f"k-{n}", (n,))


@dataclass
class RefusingSink:
    """Refuses a load when ``refuse`` gives a signature for any of its rows."""

    refuse: Callable[[int], str | None]
    schema_problem: str | None = None
    table: set[str] = field(default_factory=set)
    loads: list[tuple[int, ...]] = field(default_factory=list)

    async def load(self, rows: Sequence[MappedRow]) -> LoadResult:
        numbers = tuple(int(str(r.values[0])) for r in rows)
        self.loads.append(numbers)
        for n in numbers:
            signature = self.refuse(n)
            if signature is not None:
                raise RowsRejectedError(f"refused row {n}: {signature}", signature=signature)
        fresh = {r.dedupe_key for r in rows} - self.table
        self.table |= fresh
        return LoadResult(len(fresh), len(rows) - len(fresh))

    async def check_schema(self) -> None:
        if self.schema_problem:
            raise SchemaError(self.schema_problem)

    async def open(self) -> None: ...
    async def create_table(self) -> bool:
        return False

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


@pytest.fixture
def logs() -> Iterator[list[dict[str, object]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def loader(sink: RefusingSink) -> Loader:
    async def nothing() -> None:
        return None

    return Loader(
        sink,
        breaker=CircuitBreaker(time.monotonic),
        backoff=ExponentialBackoff(base=0.002, cap=0.01, floor=0.001),
        counters=WorkerCounters(),
        log=structlog.get_logger("test"),
        on_circuit_change=nothing,
        clock=time.monotonic,
    )


def load(sink: RefusingSink, rows: Sequence[MappedRow]) -> tuple[Loader, LoadResult, list[str]]:
    the_loader = loader(sink)

    async def go() -> tuple[LoadResult, list[str]]:
        result, dead = await asyncio.wait_for(the_loader.load(rows), 10)
        return result, [letter.message.message_id for letter in dead]

    result, dead = asyncio.run(go())
    return the_loader, result, dead


def test_a_row_that_fails_where_its_neighbours_load_is_dead_lettered_alone() -> None:
    sink = RefusingSink(lambda n: OUT_OF_RANGE if n == 137 else None)
    the_loader, result, dead = load(sink, [row(n) for n in range(300)])
    assert dead == ["m-137"]
    assert result == LoadResult(299, 0)
    assert the_loader.breaker.state is CircuitState.CLOSED
    assert the_loader.breaker.history == ()  # bad data is not an outage
    assert the_loader.table_fault is None


def test_a_run_of_bad_rows_at_the_front_is_still_the_rows_fault() -> None:
    """Rows 0-2 fail alone the same way, but the rest loads: those three are dead-lettered."""
    sink = RefusingSink(lambda n: OUT_OF_RANGE if n < 3 else None)
    the_loader, result, dead = load(sink, [row(n) for n in range(300)])
    assert dead == ["m-0", "m-1", "m-2"]
    assert result == LoadResult(297, 0)
    assert the_loader.breaker.history == ()


def test_rows_failing_with_different_errors_are_each_dead_lettered() -> None:
    bad = {0: OUT_OF_RANGE, 1: OUT_OF_RANGE, 2: OUT_OF_RANGE, 40: TYPE_CHANGED, 41: "x"}
    sink = RefusingSink(bad.get)
    _, result, dead = load(sink, [row(n) for n in range(100)])
    assert sorted(dead) == sorted(f"m-{n}" for n in bad)
    assert result == LoadResult(95, 0)


@dataclass
class Table:
    """A table refusing every row with one error until the test fixes it."""

    broken: bool = True

    def refuse(self, n: int) -> str | None:
        return TYPE_CHANGED if self.broken else None


def fix_after_faults(
    the_loader: Loader, table: Table, rows: Sequence[MappedRow], logs: list[dict[str, object]]
) -> tuple[LoadResult, list[str]]:
    """Load ``rows``; once the table was found at fault three times, fix it; the outcome."""

    async def go() -> tuple[LoadResult, list[str]]:
        task = asyncio.create_task(the_loader.load(rows))
        limit = time.monotonic() + 10
        while sum(e["event"] == "table_rejects_rows" for e in logs) < 3:
            assert time.monotonic() < limit and not task.done()
            await asyncio.sleep(0.001)
        assert not the_loader.breaker.allows_receiving
        table.broken = False
        result, dead = await asyncio.wait_for(task, 10)
        return result, [letter.message.message_id for letter in dead]

    return asyncio.run(go())


def test_every_row_refused_the_same_way_holds_the_batch_until_the_table_is_fixed(
    logs: list[dict[str, object]],
) -> None:
    table = Table()
    sink = RefusingSink(table.refuse, schema_problem="col is int")
    the_loader = loader(sink)
    result, dead = fix_after_faults(the_loader, table, [row(n) for n in range(300)], logs)
    assert dead == []
    assert result == LoadResult(300, 0)
    assert sink.table == {f"k-{n}" for n in range(300)}
    assert the_loader.breaker.state is CircuitState.CLOSED
    assert the_loader.table_fault is None
    assert the_loader.counters.load_failures >= 3
    faults = [e for e in logs if e["event"] == "table_rejects_rows"]
    assert all(e["circuit"] == "open" and e["error"] == TYPE_CHANGED for e in faults)
    assert all(e["schema"] == "col is int" for e in faults)
    assert not [e for e in logs if e["event"] == "row_rejected"]
    # Each try stops after three rows alone and one load of the rest: about log2(300) + 4
    # loads, not one per row.
    first_try = sink.loads[: sink.loads.index(tuple(range(3, 300)))]
    assert len(first_try) <= 12, first_try
    assert sum(len(numbers) == 1 for numbers in first_try) == 3


@pytest.mark.parametrize("size", [2, 3])
def test_a_small_batch_refused_row_by_row_is_held(size: int, logs: list[dict[str, object]]) -> None:
    table = Table()
    the_loader = loader(RefusingSink(table.refuse))
    result, dead = fix_after_faults(the_loader, table, [row(n) for n in range(size)], logs)
    assert dead == []
    assert result == LoadResult(size, 0)
    assert CircuitState.OPEN in [state for _, state in the_loader.breaker.history]


def test_one_row_alone_is_held_only_while_other_batches_fail_the_same_way() -> None:
    sink = RefusingSink(lambda n: TYPE_CHANGED if n == 0 else None)
    _, _, dead = load(sink, [row(0)])
    assert dead == ["m-0"]  # no other evidence: a single bad row

    broken = True
    sink = RefusingSink(lambda n: TYPE_CHANGED if broken else None)
    the_loader = loader(sink)
    the_loader.table_fault = TYPE_CHANGED  # another batch found the table refusing rows

    async def go() -> list[str]:
        nonlocal broken
        task = asyncio.create_task(the_loader.load([row(0)]))
        limit = time.monotonic() + 10
        while len(sink.loads) < 3:
            assert time.monotonic() < limit and not task.done()
            await asyncio.sleep(0.001)
        broken = False
        _, letters = await asyncio.wait_for(task, 10)
        return [letter.message.message_id for letter in letters]

    assert asyncio.run(go()) == []
    assert sink.table == {"k-0"}


def test_a_table_mended_mid_bisection_dead_letters_nothing() -> None:
    """Seen in the full suite: the first rows tried alone fail while the column is still the
    wrong type, then it is altered back and the rest of the batch loads. The rows that failed
    before the fix are tried again, not dead-lettered."""
    mended = False

    def refuse(n: int) -> str | None:
        return None if mended else TYPE_CHANGED

    sink = RefusingSink(refuse)
    original = sink.load

    async def load_and_mend(rows: Sequence[MappedRow]) -> LoadResult:
        nonlocal mended
        if len(rows) == 37:  # the rest of the batch, after three rows failed alone
            mended = True
        return await original(rows)

    sink.load = load_and_mend  # type: ignore[method-assign]
    _, result, dead = load(sink, [row(n) for n in range(40)])
    assert dead == []
    assert result == LoadResult(40, 0)
