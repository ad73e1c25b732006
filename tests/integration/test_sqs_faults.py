"""A flaky SQS in front of real workers: failed heartbeats, failing deletes, throttled receives.

Every worker talks to the emulator through ``FaultProxy``, which injects the fault and logs
each batch request per receipt handle; the checker then reads PostgreSQL, the DLQ and the
queue directly (not through the proxy) and must find every message where it belongs.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path

import psycopg

from sluice.local.emulator import Emulator
from sluice.sources.sqs import ENTRY_RETRIES
from tests.support import scenario
from tests.support.fault_proxy import Attempt, FaultProxy, final_stats
from tests.support.worker import Worker, wait_for

VISIBILITY = 3
FAST = {
    "SLUICE_VISIBILITY_TIMEOUT": str(VISIBILITY),
    "SLUICE_BATCH_MAX_AGE": "0.2",
}
ENTRY_TRIES = 1 + ENTRY_RETRIES  # SqsQueue: a batch entry is tried once, then retried
BACKOFF_FLOOR = 0.05  # ExponentialBackoff.floor: no retry comes sooner


def _alive(worker: Worker) -> None:
    code = worker.process.poll()
    assert code is None, f"worker exited {code} early:\n{worker.log[-3000:]}"


def _gaps(attempts: list[Attempt]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(attempts)]


def test_heartbeat_survives_partial_failed_entries_while_loads_are_blocked(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    """Loads wait on a table lock for longer than the visibility timeout; meanwhile a
    third of the heartbeat's ChangeMessageVisibilityBatch entries come back Failed[].
    Retried entries keep every held message invisible: none is delivered twice."""
    run = scenario.prepare(
        emulator.endpoint,
        pg_dsn,
        table_name,
        scenario.plan(1200, malformed_ratio=0.02, duplicate_ratio=0.03, seed=81),
    )
    action = "ChangeMessageVisibilityBatch"
    with FaultProxy(emulator.endpoint, fail_visibility_entries=0.3, seed=81) as proxy:
        env = run.env(FAST | {"SLUICE_BATCH_MAX_ROWS": "100"}, endpoint=proxy.url)
        with psycopg.connect(pg_dsn) as locker:
            locker.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
            locked_at = time.monotonic()
            worker = scenario.start_draining(env, tmp_path / "worker.log")

            def extended_enough() -> bool:
                _alive(worker)
                # Held past its visibility timeout at least once over: some message has
                # been extended three times, and some entries were refused on the way.
                forwarded = (
                    sum(1 for a in attempts if a.outcome == "forwarded")
                    for attempts in proxy.entry_attempts(action).values()
                )
                return (
                    max(forwarded, default=0) >= 3
                    and proxy.injected("visibility_entry_failures") > 0
                )

            try:
                wait_for(extended_enough, 30, "the heartbeat to extend held messages")
                # Nothing got past the lock (only the lock holder can look).
                found = locker.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
                assert found == (0,)
            except BaseException:
                worker.kill()
                raise
            finally:
                locker.rollback()  # releases the lock
            held_for = time.monotonic() - locked_at
        code = worker.wait(timeout=60)
        assert code == 0, worker.log[-3000:]
        calls = proxy.calls(action)
        injected = proxy.injected("visibility_entry_failures")
        attempts = proxy.entry_attempts(action)
        received = proxy.received_message_ids()

    outcome = scenario.assert_all_accounted(run)
    assert held_for > VISIBILITY
    assert calls > 0 and injected > 0
    # A refused entry was retried in the same heartbeat: some handle was Failed and then
    # extended, after a backoff, with no gap shorter than the backoff's floor.
    recovered = sum(
        1
        for tries in attempts.values()
        if any(
            a.outcome == "failed_entry" and b.outcome == "forwarded"
            for a, b in itertools.pairwise(tries)
        )
    )
    assert recovered > 0
    shortest = min(g for tries in attempts.values() for g in _gaps(tries))
    assert shortest >= BACKOFF_FLOOR * 0.8, shortest
    twice = sum(1 for n in received.values() if n > 1)
    assert twice == 0, f"{twice} message(s) delivered twice: an extension was lost"
    stats = final_stats(worker.log)
    assert stats["messagesReceived"] == len(run.plan)
    assert stats["rowsInserted"] == outcome.report.loaded_rows
    print(
        f"\nheartbeat: lock held {held_for:.1f}s (visibility {VISIBILITY}s); {calls} "
        f"{action} calls, {sum(map(len, attempts.values()))} entry tries, {injected} injected "
        f"Failed[], {recovered} handles recovered by retry; 0 redelivered; "
        f"{outcome.report.summary()}"
    )


def test_delete_errors_for_a_window_are_retried_with_backoff(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    """DeleteMessageBatch answers HTTP 500 and throttling, alternately, for 1.5 s.

    Each group of ten is retried with backoff at most three times; a group still failing
    is left to its visibility timeout, comes back, and is merged into nothing."""
    run = scenario.prepare(
        emulator.endpoint,
        pg_dsn,
        table_name,
        scenario.plan(1200, malformed_ratio=0.02, duplicate_ratio=0.03, seed=82),
    )
    action = "DeleteMessageBatch"
    with FaultProxy(emulator.endpoint) as proxy:
        env = run.env(FAST | {"SLUICE_BATCH_MAX_ROWS": "100"}, endpoint=proxy.url)
        proxy.fail_action_for(1.5, action=action, kind="alternate")  # from the first delete
        stats = scenario.drain(env, tmp_path / "worker.log")
        log = (tmp_path / "worker.log").read_text()
        calls = proxy.calls(action)
        throttled = proxy.injected(f"{action}:throttle")
        failed_500 = proxy.injected(f"{action}:500")
        attempts = proxy.entry_attempts(action)
        received = proxy.received_message_ids()

    outcome = scenario.assert_all_accounted(run)
    assert throttled > 0 and failed_500 > 0
    tries = Counter(len(t) for t in attempts.values())
    # Bounded: no receipt handle was sent in more than ENTRY_TRIES DeleteMessageBatch requests,
    # and no hot loop: consecutive tries of one handle are at least the backoff floor apart.
    assert max(tries) <= ENTRY_TRIES, tries
    retried = [t for t in attempts.values() if len(t) > 1]
    assert retried, "no delete was retried"
    shortest = min(g for t in retried for g in _gaps(t))
    assert shortest >= BACKOFF_FLOOR * 0.8, shortest
    recovered = sum(1 for t in retried if t[-1].outcome == "forwarded")
    exhausted = sum(1 for t in attempts.values() if t[-1].outcome != "forwarded")
    # A handle that failed all four tries was logged and left to come back.
    gave_up = scenario.events(log, "delete_failed")
    assert bool(exhausted) == bool(gave_up)
    redelivered = sum(n - 1 for n in received.values())
    assert stats["messagesReceived"] == len(run.plan) + redelivered
    print(
        f"\ndelete window: {calls} {action} calls, {throttled} throttled + {failed_500} "
        f"HTTP 500 injected; tries per handle {dict(sorted(tries.items()))}; "
        f"{recovered} handles deleted on a retry, {exhausted} gave up and came back "
        f"({redelivered} redeliveries absorbed); shortest retry gap {shortest * 1000:.0f} ms; "
        f"{outcome.report.summary()}"
    )


def test_receive_throttled_for_three_seconds_mid_drain(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    """ReceiveMessage is throttled for 3 s while a large queue drains: each receiver backs
    off (capped at 2 s) instead of spinning, and the drain resumes once the window ends."""
    run = scenario.prepare(
        emulator.endpoint,
        pg_dsn,
        table_name,
        scenario.plan(2500, malformed_ratio=0.02, duplicate_ratio=0.03, seed=83),
    )
    window = 3.0
    with FaultProxy(emulator.endpoint) as proxy:
        env = run.env(FAST | {"SLUICE_RETRY_MAX_BACKOFF": "2"}, endpoint=proxy.url)
        worker = scenario.start_draining(env, tmp_path / "worker.log")

        def draining() -> bool:
            _alive(worker)
            return scenario.row_count(pg_dsn, table_name) >= 300

        try:
            wait_for(draining, 30, "the drain to get going")
        except BaseException:
            worker.kill()
            raise
        proxy.fail_action_for(window, action="ReceiveMessage", kind="throttle")
        rows_at_throttle = scenario.row_count(pg_dsn, table_name)
        code = worker.wait(timeout=60)
        assert code == 0, worker.log[-3000:]
        injected = proxy.injected("ReceiveMessage:throttle")
        calls = proxy.calls("ReceiveMessage")

    outcome = scenario.assert_all_accounted(run)
    assert rows_at_throttle < outcome.report.loaded_rows, "the queue drained before the throttle"
    failures = scenario.events(worker.log, "receive_failed")
    assert injected > 0
    # The wire client does not retry on its own: each throttled call reached the pipeline.
    assert len(failures) == injected
    assert min(float(f["retry_in"]) for f in failures) >= BACKOFF_FLOOR
    receivers = int(env["SLUICE_RECEIVE_CONCURRENCY"])
    # Backoff from 0.2 s doubling to a 2 s cap: about six tries per receiver in 3 s. A hot
    # loop would make hundreds.
    assert injected <= receivers * 12, injected
    print(
        f"\nreceive throttle: {window:.0f}s window at {rows_at_throttle} rows; {injected} "
        f"throttled of {calls} ReceiveMessage calls ({receivers} receivers); "
        f"{outcome.report.summary()}"
    )
