"""Ten crashes in a row at one step, then a clean drain: the queue still adds up.

For each fault point a worker is started, SIGKILLs itself at the Nth hit of that point
(N drawn from 1..3 by a seeded generator), and the next worker starts on what is left:
messages the dead worker held reappear after their 3 s visibility timeout while the next
one is already at work. Small batches make each round consume only part of the queue.
After ten kills a clean `--drain` worker runs to the end and the total-queue checker must
find nothing lost, doubled, unexpected, misrouted or stuck.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from sluice.local.emulator import Emulator
from tests.support import scenario
from tests.support.fault_proxy import log_events
from tests.support.worker import start_worker

POINTS = ("after_receive", "mid_staging", "before_commit", "after_commit", "mid_delete")
ROUNDS = 10
MESSAGES = 2000  # mid_delete consumes ~140 a round: leave a margin after ten
VISIBILITY = "3"  # the minimum is 2; a batch's age must stay under half of it
ROUND_ENV = {
    "SLUICE_VISIBILITY_TIMEOUT": VISIBILITY,
    "SLUICE_BATCH_MAX_AGE": "0.2",
    "SLUICE_BATCH_MAX_ROWS": "50",
}
# A message may be handed to several of the doomed workers (after_receive kills a worker
# holding up to 40 of them). The redrive policy would move a valid message to the DLQ
# after its tenth receive, which is SQS doing its job, not Sluice misrouting: allow more.
MAX_RECEIVE = 100


@pytest.mark.parametrize("point", POINTS)
def test_ten_kills_at_one_point_then_drain_adds_up(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, point: str
) -> None:
    index = POINTS.index(point)
    messages = scenario.plan(MESSAGES, malformed_ratio=0.02, duplicate_ratio=0.03, seed=50 + index)
    run = scenario.prepare(emulator.endpoint, pg_dsn, table_name, messages, max_receive=MAX_RECEIVE)
    rng = random.Random(900 + index)
    env = run.env(ROUND_ENV)

    rows_after: list[int] = []
    for round_no in range(ROUNDS):
        left = scenario.queue_depth(run)
        # Every round must find work, or a worker that never reaches its fault point
        # would just wait: the plan is sized so ten rounds leave some of it behind.
        assert left > 0, f"queue empty before round {round_no}"
        after = rng.randint(1, 3)
        worker_id = f"{table_name}-{point}-{round_no}"
        worker = start_worker(
            env
            | {
                "SLUICE_FAULT_POINT": point,
                "SLUICE_FAULT_AFTER": str(after),
                "WORKER_ID": worker_id,
            },
            tmp_path / f"round-{round_no}.log",
        )
        code = worker.wait(timeout=30)
        assert code == -signal.SIGKILL, (
            f"round {round_no} (fault after {after}) exited {code}:\n{worker.log[-3000:]}"
        )
        assert not any(e.get("event") == "stopped" for e in log_events(worker.log))
        # A COMMIT sent just before the kill may still be applied: wait until the dead
        # worker's sessions are gone before counting rows.
        scenario.wait_sessions_gone(pg_dsn, [worker_id])
        rows_after.append(scenario.row_count(pg_dsn, table_name))

    assert scenario.queue_depth(run) > 0, "the crash rounds consumed the whole queue"
    if point in ("after_commit", "mid_delete"):
        assert rows_after[0] > 0, "the first kill came before any commit"
    stats = scenario.drain(
        run.env({"SLUICE_VISIBILITY_TIMEOUT": VISIBILITY}), tmp_path / "drain.log"
    )

    outcome = scenario.assert_all_accounted(run)
    rows_before_drain = rows_after[-1]
    assert stats["rowsInserted"] == outcome.report.loaded_rows - rows_before_drain
    print(
        f"\n{point}: {ROUNDS} kills; rows after each round {rows_after}; drain inserted "
        f"{stats['rowsInserted']}, absorbed {stats['duplicatesAbsorbed']} duplicates "
        f"(plan repeats + redeliveries); DLQ {outcome.dlq_raw} letters, "
        f"{outcome.dlq_distinct} distinct; {outcome.report.summary()}"
    )
