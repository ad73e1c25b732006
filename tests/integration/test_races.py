"""Several workers race over one queue and one table: every event becomes exactly one row.

Each valid event is sent three times, its copies a few dozen messages apart, so the
copies of one key are received by different workers at nearly the same moment and their
merges (ON CONFLICT DO NOTHING on the dedupe key) meet in PostgreSQL. A receive gate in
the SQS proxy lets every worker's first polls through at the same instant. The workers' own
accounts must add up too: across all of them, rows inserted is the number of distinct
events, and duplicates absorbed is the number of extra copies.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sluice.local.emulator import Emulator
from sluice.tools.synth import SyntheticMessage
from tests.support import scenario
from tests.support.fault_proxy import FaultProxy, final_stats
from tests.support.worker import start_worker, wait_for

COPIES = 3
BLOCK = 32  # events per block; a block is sent COPIES times, each time in a new order


def _racing_plan(events: int, seed: int) -> list[SyntheticMessage]:
    """Every valid event COPIES times (copies a block apart), malformed ones scattered."""
    base = scenario.plan(events, malformed_ratio=0.015, duplicate_ratio=0.0, seed=seed)
    valid = [m for m in base if m.valid]
    malformed = [m for m in base if not m.valid]
    rng = random.Random(seed)
    out: list[SyntheticMessage] = []
    for start in range(0, len(valid), BLOCK):
        block = valid[start : start + BLOCK]
        for _ in range(COPIES):
            out.extend(rng.sample(block, len(block)))
    for message in malformed:
        out.insert(rng.randrange(len(out) + 1), message)
    return out


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_racing_on_the_same_keys_load_each_event_once(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, workers: int
) -> None:
    # The checker counts rows and dead letters, not messages: its minimum of 1000 through
    # takes over 1000 distinct events, so about 3000 messages with three copies each.
    messages = _racing_plan(1030, seed=70 + workers)
    distinct = len({m.body for m in messages if m.valid})
    extra_copies = sum(1 for m in messages if m.valid) - distinct
    assert distinct >= scenario.MIN_THROUGH
    assert extra_copies == (COPIES - 1) * distinct
    run = scenario.prepare(emulator.endpoint, pg_dsn, table_name, messages)

    # Started together, workers still come up a second apart on two cores, and the first
    # up would drain the queue alone. The proxy holds every receive at a gate (an empty
    # long poll if it stays shut) until all receivers of all workers wait there.
    with FaultProxy(emulator.endpoint) as proxy:
        proxy.hold_receives()
        env = run.env({"SLUICE_BATCH_MAX_ROWS": "100"}, endpoint=proxy.url)
        receivers = int(env["SLUICE_RECEIVE_CONCURRENCY"])
        racing = [
            start_worker(env | {"WORKER_ID": f"racer-{i}"}, tmp_path / f"worker-{i}.log", "--drain")
            for i in range(workers)
        ]
        try:
            wait_for(
                lambda: proxy.in_flight("ReceiveMessage") == workers * receivers,
                30,
                "every receiver of every worker to wait at the gate",
            )
            proxy.open_receives()
            codes = [w.wait(timeout=90) for w in racing]
        finally:
            for w in racing:
                w.kill()
    for i, (worker, code) in enumerate(zip(racing, codes, strict=True)):
        assert code == 0, f"worker {i} exited {code}:\n{worker.log[-3000:]}"

    outcome = scenario.assert_all_accounted(run)
    assert outcome.report.loaded_rows == distinct
    stats = [final_stats(w.log) for w in racing]
    received = scenario.total(stats, "messagesReceived")
    inserted = scenario.total(stats, "rowsInserted")
    absorbed = scenario.total(stats, "duplicatesAbsorbed")
    # Each key is inserted by exactly one worker's committed merge; the losers of a race
    # waited on the winner's unique-index entry and then skipped the row.
    assert inserted == distinct, [s["rowsInserted"] for s in stats]
    # Redelivery (a visibility timeout overtaking a late heartbeat) would add absorbed
    # duplicates beyond the copies sent; when nothing came twice the count is exact.
    redelivered = received - len(messages)
    assert redelivered >= 0
    assert extra_copies <= absorbed <= extra_copies + redelivered, (absorbed, extra_copies)
    if redelivered == 0:
        assert absorbed == extra_copies
    # The work was shared: every worker took messages and absorbed some copies.
    assert all(s["messagesReceived"] > 0 for s in stats), stats
    deadlocks = sum(
        1
        for w in racing
        for e in scenario.events(w.log, "load_failed")
        if "deadlock" in str(e.get("error", "")).lower()
    )
    load_failures = sum(len(scenario.events(w.log, "load_failed")) for w in racing)
    print(
        f"\n{workers} workers: {len(messages)} messages, {distinct} events x{COPIES}; "
        f"received {[s['messagesReceived'] for s in stats]}, "
        f"inserted {[s['rowsInserted'] for s in stats]}, "
        f"absorbed {[s['duplicatesAbsorbed'] for s in stats]}; redelivered {redelivered}; "
        f"load retries {load_failures} (deadlocks {deadlocks}); {outcome.report.summary()}"
    )
