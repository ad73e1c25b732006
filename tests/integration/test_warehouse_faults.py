"""Warehouse faults through a TCP proxy: an outage, a slow link, a cut COMMIT, a thin pipe.

Real processes throughout: the fauxqs emulator, PostgreSQL, and `python -m sluice run`
workers whose SLUICE_DATABASE_URL points at a ``TcpFaultProxy`` in front of PostgreSQL.
Each scenario sends at least 1000 messages and ends with the total-queue checker (nothing
lost, duplicated, unexpected, misrouted or stuck), its inputs read from PostgreSQL directly
and from the queues.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.tools.checker import CheckReport, Sent, check, key_function
from sluice.tools.synth import SyntheticMessage, synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import FaultProxy, final_stats, has_event, log_events
from tests.support.tcp_proxy import TcpFaultProxy
from tests.support.worker import Worker, init_db, start_worker, wait_for, worker_env

MIN_THROUGH = 1000  # the checker fails a run that moved fewer messages than this


def _plan(count: int, seed: int, *, duplicates: float = 0.05) -> list[SyntheticMessage]:
    return list(
        synthetic_stream(count, malformed_ratio=0.03, duplicate_ratio=duplicates, seed=seed)
    )


def _events(worker: Worker, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(worker.log) if e.get("event") == name]


class _Scene:
    """Fresh queues and table, a TCP proxy in front of PostgreSQL, and a worker env."""

    def __init__(
        self,
        emulator: Emulator,
        pg_dsn: str,
        table: str,
        proxy: TcpFaultProxy,
        plan: Sequence[SyntheticMessage],
        *,
        sqs_endpoint: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.pg_dsn = pg_dsn
        self.table = table
        self.plan = list(plan)
        self.queues = sqs.make_queues(emulator.endpoint)
        # In clear, so the proxy can read the protocol (cut_after_commit).
        through_proxy = make_conninfo(
            pg_dsn, host="127.0.0.1", port=str(proxy.port), sslmode="disable", gssencmode="disable"
        )
        self.env = worker_env(
            endpoint=sqs_endpoint or emulator.endpoint,
            queue_url=self.queues.url,
            dlq_url=self.queues.dlq_url,
            table=table,
            database_url=through_proxy,
            extra=extra,
        )
        init_db(self.env | {"SLUICE_DATABASE_URL": pg_dsn})  # not through the proxy

    def send(self, messages: Sequence[SyntheticMessage]) -> None:
        sqs.send(self.queues.endpoint, self.queues.url, (m.body for m in messages))

    def depth(self) -> Any:
        return sqs.depth(self.queues.endpoint, self.queues.url)

    def rows(self) -> dict[str, int]:
        """dedupe_key -> number of rows, read from PostgreSQL directly."""
        with psycopg.connect(self.pg_dsn) as conn:
            found = conn.execute(
                f'SELECT dedupe_key, count(*) FROM "{self.table}" GROUP BY 1'
            ).fetchall()
        return {str(key): int(n) for key, n in found}

    def valid_keys(self) -> int:
        key_of = key_function(load_mapping(None, self.table))
        return len({key_of(m.body) for m in self.plan if m.valid})

    def start(self, log: Path, *args: str) -> Worker:
        worker = start_worker(self.env, log, *args)
        wait_for(
            lambda: has_event(worker.log, "started") or worker.process.poll() is not None,
            45,
            "the worker to start",
            step=0.2,
        )
        assert worker.process.poll() is None, worker.log[-3000:]
        return worker

    def check(self) -> CheckReport:
        report = check(
            (Sent(m.body, m.valid) for m in self.plan),
            self.rows(),
            sqs.dlq_bodies(self.queues.endpoint, self.queues.dlq_url),
            self.depth().total,
            key_function(load_mapping(None, self.table)),
            min_messages=MIN_THROUGH,
        )
        assert report.ok, report.summary()
        return report


@pytest.fixture
def pg_proxy(pg_dsn: str) -> Any:
    params = conninfo_to_dict(pg_dsn)
    with TcpFaultProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))) as p:
        yield p


def _stats_lines(worker: Worker) -> list[dict[str, Any]]:
    return _events(worker, "stats")


def test_warehouse_down_for_a_minute_pauses_receiving_and_resumes_by_itself(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, pg_proxy: TcpFaultProxy
) -> None:
    outage = 60.0
    max_held = 600
    plan = _plan(1500, seed=61)
    before, during = plan[:300], plan[300:]
    scene = _Scene(
        emulator,
        pg_dsn,
        table_name,
        pg_proxy,
        plan,
        extra={
            "SLUICE_STATS_INTERVAL": "1",
            "SLUICE_RETRY_MAX_BACKOFF": "2",
            "SLUICE_MAX_HELD_MESSAGES": str(max_held),
            "SLUICE_VISIBILITY_TIMEOUT": "10",
        },
    )
    worker = scene.start(tmp_path / "worker.log")
    try:
        scene.send(before)
        wait_for(lambda: scene.depth().total == 0, 30, "the first part loaded", step=0.5)
        rows_before = sum(scene.rows().values())
        assert rows_before > 0
        wait_for(lambda: bool(_stats_lines(worker)), 10, "a stats line", step=0.2)

        # Down: every open connection reset, new ones refused for half the outage and
        # blackholed (accepted, never answered) for the other half.
        down_at = time.monotonic()
        reset = pg_proxy.reset(refuse_new=True)
        scene.send(during)
        wait_for(
            lambda: any(e.get("circuit") == "open" for e in _events(worker, "load_failed")),
            20,
            "a failed load to open the circuit",
            step=0.2,
        )
        opened_at = time.monotonic()
        blackholed = False
        samples: list[tuple[float, int, int, int]] = []  # (t, received, visible, in flight)
        while (now := time.monotonic()) < down_at + outage:
            if not blackholed and now >= down_at + outage / 2:
                pg_proxy.set_refusing(False)
                pg_proxy.set_blackhole(True)
                blackholed = True
            depth = scene.depth()
            received = _stats_lines(worker)[-1]["messagesReceived"]
            samples.append((now - opened_at, received, depth.visible, depth.in_flight))
            assert worker.process.poll() is None, worker.log[-3000:]
            time.sleep(1.0)  # a sampling period, not a wait for something to happen
        rows_during = sum(scene.rows().values())
        dlq_during = sqs.dlq_bodies(scene.queues.endpoint, scene.queues.dlq_url)
        failures = _events(worker, "load_failed")
        down_stats = pg_proxy.stats()

        pg_proxy.heal()
        healed_at = time.monotonic()
        wait_for(lambda: has_event(worker.log, "load_recovered"), 20, "a load to succeed", 0.2)
        resumed_in = time.monotonic() - healed_at
        wait_for(
            lambda: scene.depth().total == 0 and _stats_lines(worker)[-1]["messagesHeld"] == 0,
            60,
            "the queue drained after the outage",
            step=0.5,
        )
        drained_in = time.monotonic() - healed_at
        worker.signal()
        assert worker.wait(timeout=20) == 0, worker.log[-3000:]
    finally:
        worker.kill()

    # While down: nothing loaded, the worker kept probing with the circuit open...
    assert reset >= 1
    assert rows_during == rows_before
    assert len(failures) >= 10, len(failures)
    assert all(e["circuit"] == "open" for e in failures)
    assert down_stats.refused >= 1
    # ...and received nothing once the polls in flight when it opened had landed (the
    # stats line is a second old at most, a long poll one more; five allow for a busy host).
    settled = [s for s in samples if s[0] >= 5.0]
    assert len(settled) >= 40, samples
    plateau = {received for _, received, _, _ in settled}
    assert len(plateau) == 1, f"received kept growing during the outage: {samples}"
    assert all(visible > 0 and in_flight <= max_held for _, _, visible, in_flight in samples)
    # No valid message was dead-lettered (its receive count did not burn down).
    valid_bodies = {m.body for m in plan if m.valid}
    assert not valid_bodies & set(dlq_during)
    # After healing, loads came back by themselves, fast; the run drained.
    assert resumed_in < 15, resumed_in
    final = final_stats(worker.log)
    # The heartbeat held every message through the outage: none came back to be received
    # a second time.
    assert final["messagesReceived"] == len(plan), final
    scene.check()
    print(
        f"outage {outage:.0f}s: {len(failures)} failed loads; "
        f"{next(iter(plateau)) - len(before)} received during it, none after the circuit "
        f"opened; "
        f"held at most {max(s[3] for s in samples)}, {min(s[2] for s in samples)}+ left "
        f"visible; resumed in {resumed_in:.1f}s, "
        f"drained in {drained_in:.1f}s; proxy {down_stats}"
    )


def test_warehouse_slower_than_visibility_timeout_keeps_every_message(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, pg_proxy: TcpFaultProxy
) -> None:
    visibility = 4
    plan = _plan(1100, seed=71)
    pg_proxy.set_latency(1.2, downstream_only=True)  # six round trips a load: about 7 s
    with FaultProxy(emulator.endpoint) as sqs_proxy:  # counts receipts per message id
        scene = _Scene(
            emulator,
            pg_dsn,
            table_name,
            pg_proxy,
            plan,
            sqs_endpoint=sqs_proxy.url,
            extra={
                "SLUICE_VISIBILITY_TIMEOUT": str(visibility),
                "SLUICE_BATCH_MAX_ROWS": "370",
                "SLUICE_LOG_LEVEL": "debug",  # the `loaded` events, with their duration
            },
        )
        scene.send(plan)
        worker = start_worker(scene.env, tmp_path / "worker.log", "--drain")
        try:
            assert worker.wait(timeout=150) == 0, worker.log[-3000:]
        finally:
            worker.kill()
        received = sqs_proxy.received_message_ids()
        extensions = sqs_proxy.calls("ChangeMessageVisibilityBatch")

    loads = [e["seconds"] for e in _events(worker, "loaded")]
    assert loads and min(loads) > visibility + 1, loads
    assert extensions > 0
    assert len(received) == len(plan)
    assert max(received.values()) == 1, "a message reappeared and was received again"
    final = final_stats(worker.log)
    assert final["messagesReceived"] == len(plan)
    assert not _events(worker, "heartbeat_failed")
    scene.check()
    print(
        f"loads took {min(loads):.1f}-{max(loads):.1f}s against a {visibility}s visibility; "
        f"{extensions} ChangeMessageVisibilityBatch calls; every message received once"
    )


def test_connection_cut_right_after_commit_loses_and_doubles_nothing(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, pg_proxy: TcpFaultProxy
) -> None:
    cuts = 3
    plan = _plan(1200, seed=81, duplicates=0.0)  # every row re-merged is a retried commit
    scene = _Scene(emulator, pg_dsn, table_name, pg_proxy, plan)
    scene.send(plan)
    pg_proxy.cut_after_commit(cuts)
    worker = start_worker(scene.env, tmp_path / "worker.log", "--drain")
    try:
        assert worker.wait(timeout=90) == 0, worker.log[-3000:]
    finally:
        worker.kill()
    stats = pg_proxy.stats()

    assert stats.commits_cut == cuts
    # The server did commit each cut transaction: its CommandComplete never reached Sluice.
    assert stats.cut_commits_confirmed() == cuts, stats.cut_replies
    unknown = [e for e in _events(worker, "load_failed") if e["kind"] == "CommitUnknownError"]
    assert len(unknown) == cuts, unknown
    assert all("connection lost during COMMIT" in e["error"] for e in unknown)
    assert has_event(worker.log, "load_recovered")
    final = final_stats(worker.log)
    # The retried loads found the committed rows and merged them into nothing.
    rows_cut = [e["rows"] for e in unknown]
    assert max(rows_cut) <= final["duplicatesAbsorbed"] <= sum(rows_cut), (final, rows_cut)
    # Rows a cut COMMIT wrote count as absorbed duplicates, not inserts, when retried.
    assert final["rowsInserted"] + final["duplicatesAbsorbed"] == scene.valid_keys()
    assert final["messagesReceived"] == len(plan)
    scene.check()
    print(
        f"{cuts} COMMITs cut (all committed on the server, {rows_cut} rows); "
        f"{final['duplicatesAbsorbed']} rows re-merged into nothing; {stats.commits_seen} commits"
    )


def test_latency_and_bandwidth_limit_during_a_normal_drain(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path, pg_proxy: TcpFaultProxy
) -> None:
    latency = 0.1
    plan = _plan(1200, seed=91)
    pg_proxy.set_latency(latency)
    pg_proxy.set_bandwidth(256 * 1024)
    scene = _Scene(
        emulator, pg_dsn, table_name, pg_proxy, plan, extra={"SLUICE_LOG_LEVEL": "debug"}
    )
    scene.send(plan)
    started = time.monotonic()
    worker = start_worker(scene.env, tmp_path / "worker.log", "--drain")
    try:
        assert worker.wait(timeout=120) == 0, worker.log[-3000:]
    finally:
        worker.kill()
    elapsed = time.monotonic() - started
    stats = pg_proxy.stats()

    loads = [e["seconds"] for e in _events(worker, "loaded")]
    # Six round trips a load, each delayed both ways: the link really was slow.
    assert loads and min(loads) > 6 * 2 * latency, loads
    assert stats.bytes_up > sum(len(m.body) for m in plan if m.valid) // 2
    assert not _events(worker, "load_failed")
    scene.check()
    print(
        f"drained {len(plan)} in {elapsed:.1f}s over {latency * 1000:.0f} ms + 256 KiB/s; "
        f"loads {min(loads):.1f}-{max(loads):.1f}s; {stats.bytes_up} bytes up"
    )
