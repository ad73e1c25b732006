"""One invocation's decisions over the memory twin: what is loaded, dead-lettered or handed
back, and the loader giving up in time (the real warehouse and DLQ:
tests/integration/test_lambda_handler.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from sluice.aws_lambda.budget import InvocationBudget
from sluice.aws_lambda.events import messages_of
from sluice.aws_lambda.invocation import Invocation, Outcome
from sluice.batching import FlushPolicy
from sluice.errors import TransientError
from sluice.mapping import load_mapping
from sluice.model import DeadLetter, ReceivedMessage, SettleResult
from sluice.observe.stats import WorkerCounters
from sluice.policies import ExponentialBackoff
from sluice.sinks.memory import MemorySink
from sluice.tools.data_locker import notification
from tests.support.lambda_events import appsflyer, event, record

MAPPING = load_mapping(None, "events")
QUICK = ExponentialBackoff(base=0.001, cap=0.001, floor=0.0)


class Letters:
    """A DLQ that takes letters, or refuses them all while ``down``."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.sent: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> SettleResult:
        if self.down:
            raise TransientError("DLQ unreachable")
        self.sent.extend(letters)
        return SettleResult(tuple(letter.message for letter in letters), ())


def invoke(
    sink: MemorySink,
    bodies: list[str],
    dlq: Letters | None = None,
    *,
    seconds_left: float = 60.0,
    rows: int = 100,
) -> tuple[Outcome, list[ReceivedMessage], WorkerCounters]:
    messages = messages_of(event([record(b, message_id=f"m-{i}") for i, b in enumerate(bodies)]))
    counters = WorkerCounters()

    async def go() -> Outcome:
        invocation = Invocation(
            sink,
            dlq,
            MAPPING,
            flush=FlushPolicy(rows, 1 << 24, 2.0),
            budget=InvocationBudget(lambda: seconds_left),
            counters=counters,
            backoff=QUICK,
            log=structlog.get_logger("test"),
        )
        return await invocation.run(messages)

    return asyncio.run(go()), messages, counters


def ids(messages: Sequence[ReceivedMessage]) -> list[str]:
    return [m.message_id for m in messages]


def test_a_failure_that_passes_within_the_attempts_loads() -> None:
    sink = MemorySink(fail_next_loads=1)
    outcome, _, counters = invoke(sink, [appsflyer(1), appsflyer(2)])
    assert outcome.failed == () and counters.inserted == 2 and counters.load_failures == 1


def test_an_outage_hands_back_rows_and_twins_but_dead_letters_still_go() -> None:
    sink = MemorySink(fail_next_loads=100)
    dlq = Letters()
    outcome, _, counters = invoke(sink, [appsflyer(1), appsflyer(1), "{", appsflyer(2)], dlq)
    assert sorted(ids(outcome.failed)) == ["m-0", "m-1", "m-3"]
    assert [letter.message.message_id for letter in dlq.sent] == ["m-2"]
    assert counters.load_failures == 3  # LOAD_ATTEMPTS, then handed back
    assert len([c for c in sink.calls if c.outcome == "transient"]) == 3


def test_rows_the_warehouse_refuses_go_to_the_dlq_with_their_twins() -> None:
    sink = MemorySink(reject_marker="POISON")
    dlq = Letters()
    bodies = [appsflyer(1, campaign="POISON"), appsflyer(1, campaign="POISON"), appsflyer(2)]
    outcome, _, counters = invoke(sink, bodies, dlq)
    assert outcome.failed == ()
    assert sorted(letter.reason.value for letter in dlq.sent) == ["rejected_by_warehouse"] * 2
    assert counters.inserted == 1


def test_an_unreachable_dlq_hands_back_only_the_dead_letters() -> None:
    outcome, _, counters = invoke(MemorySink(), [appsflyer(1), "", "[]"], Letters(down=True))
    assert ids(outcome.failed) == ["m-1", "m-2"]
    assert counters.inserted == 1 and counters.dead_letter_send_failures == 2


def test_without_a_dlq_dead_letters_come_back_for_the_redrive_policy() -> None:
    outcome, _, counters = invoke(MemorySink(), [appsflyer(1), "{"], None)
    assert ids(outcome.failed) == ["m-1"]
    assert sum(counters.left_to_redrive.values()) == 1


def test_a_table_refusing_every_row_is_handed_back_not_dead_lettered() -> None:
    # Every row refused alone with one error: the table is at fault (policies.RejectionPolicy)
    sink = MemorySink(reject_marker="af_purchase")
    dlq = Letters()
    outcome, _, _ = invoke(sink, [appsflyer(i) for i in range(4)], dlq)
    assert ids(outcome.failed) == ["m-0", "m-1", "m-2", "m-3"]
    assert dlq.sent == []


def test_no_time_left_loads_nothing_and_sends_nothing() -> None:
    sink, dlq = MemorySink(), Letters()
    outcome, messages, _ = invoke(sink, [appsflyer(1), "{"], dlq, seconds_left=4.0)
    assert outcome.failed == tuple(messages) and outcome.not_reached == 2
    assert sink.calls == [] and dlq.sent == []


def test_a_notification_of_data_locker_objects_is_dead_lettered_for_a_worker() -> None:
    dlq = Letters()
    key = "data-locker/t=installs/dt=2026-12-03/h=4/part-00000.gz"
    bodies = [notification("bucket", key, sns=True), appsflyer(1)]
    outcome, _, counters = invoke(MemorySink(), bodies, dlq)
    assert outcome.failed == () and counters.inserted == 1
    [letter] = dlq.sent
    assert letter.message.message_id == "m-0"
    assert letter.reason.value == "unsupported_envelope" and "worker" in letter.detail
