"""The supervisor as a real process over the emulator and PostgreSQL: it keeps N workers,
restarts a killed one, serves their metrics together, stops them all on SIGTERM, and scales
out while the queue grows and back in when it drains, within the cooldowns."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.integration.test_metrics import get
from tests.support import sqs
from tests.support.tcp_proxy import TcpFaultProxy
from tests.support.worker import (
    Worker,
    duckdb_worker_env,
    init_db,
    run_sluice,
    start_worker,
    wait_for,
    worker_env,
)


def supervisor_env(
    emulator: Emulator, queues: sqs.Queues, table: str, dsn: str, tmp_path: Path, **extra: str
) -> tuple[dict[str, str], str]:
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table,
        database_url=dsn,
        extra={
            "PORT": str(port),
            "WORKER_ID": "sup",
            "SLUICE_CONTROL_SOCKET": str(tmp_path / "ctl" / "supervisor.sock"),
            "SLUICE_QUEUE_ATTRIBUTES_INTERVAL": "1",
            "SLUICE_RESTART_MAX_BACKOFF": "1",
            **extra,
        },
    )
    return env, f"http://127.0.0.1:{port}"


def status(base: str) -> dict[str, Any]:
    code, text = get(f"{base}/status")
    return json.loads(text) if code == 200 else {}


def running_pids(base: str) -> dict[str, int]:
    processes = status(base).get("workers", {}).get("processes", [])
    return {p["worker"]: p["pid"] for p in processes if p["state"] == "running"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not a running worker.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def events(log: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{") and f'"event":"{name}"' in line.replace(" ", ""):
            found.append(json.loads(line))
    return found


@dataclass
class Supervised:
    """A queue, a table and a supervisor environment; supervisors started are killed after."""

    emulator: Emulator
    queues: sqs.Queues
    env: dict[str, str]
    base: str
    log: Path
    started: list[Worker]

    def start(self, *args: str) -> Worker:
        worker = start_worker(self.env, self.log, *args)
        self.started.append(worker)
        return worker


@pytest.fixture
def supervised(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> Iterator[Supervised]:
    queues = sqs.make_queues(emulator.endpoint)
    env, base = supervisor_env(emulator, queues, table_name, pg_dsn, tmp_path)
    init_db(env)
    setup = Supervised(emulator, queues, env, base, tmp_path / "supervisor.log", [])
    yield setup
    for worker in setup.started:
        worker.kill()


def test_fixed_workers_restart_serve_metrics_together_and_stop_gracefully(
    supervised: Supervised, pg_dsn: str, table_name: str
) -> None:
    emulator, queues, base = supervised.emulator, supervised.queues, supervised.base
    plan = list(synthetic_stream(1500, malformed_ratio=0.02, seed=11))
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    supervisor = supervised.start("--processes", "2")

    wait_for(lambda: len(running_pids(base)) == 2, 30, "two workers running")
    assert set(running_pids(base)) == {"sup-1", "sup-2"}
    wait_for(lambda: sqs.depth(emulator.endpoint, queues.url).total == 0, 60, "the queue to drain")

    # /metrics serves both children's series; their counts add up to the work done.
    def per_worker(outcome: str) -> dict[str, float]:
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(get(f"{base}/metrics")[1]):
            for sample in family.samples:
                if sample.name == "sluice_messages_total" and sample.labels["outcome"] == outcome:
                    totals[sample.labels["worker"]] = sample.value
        return totals

    wait_for(lambda: set(per_worker("received")) == {"sup-1", "sup-2"}, 30, "both children scraped")
    wait_for(
        lambda: sum(per_worker("deleted").values()) == 1500,
        20,
        "children's deleted counters to add up to 1500",
    )
    metrics = get(f"{base}/metrics")[1]
    assert 'sluice_supervisor_workers{state="running"} 2.0' in metrics
    assert get(f"{base}/healthz")[0] == 200
    wait_for(lambda: get(f"{base}/readyz")[0] == 200, 20, "supervisor /readyz")

    # A killed child is restarted under the same worker id with a new pid.
    before = running_pids(base)
    os.kill(before["sup-1"], signal.SIGKILL)
    wait_for(
        lambda: running_pids(base).get("sup-1") not in (None, before["sup-1"]),
        30,
        "sup-1 to be restarted",
    )
    assert status(base)["workers"]["restarts"] == 1
    assert running_pids(base)["sup-2"] == before["sup-2"]
    # A child signalled before Python installs its handlers would die of the default action:
    # wait until the new one serves its metrics (handlers are in place long before that).
    wait_for(
        lambda: 'sluice_supervisor_child_up{worker="sup-1"} 1.0' in get(f"{base}/metrics")[1],
        30,
        "the restarted sup-1 to serve metrics",
    )

    # SIGTERM: every child stops gracefully (exit 0, expected), then the supervisor exits 0.
    children = list(running_pids(base).values())
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in children)
    exits = events(supervisor.log, "worker_exited")
    last_two = [e for e in exits if e["pid"] in children]
    assert len(last_two) == 2
    assert all(e["code"] == 0 and e["expected"] for e in last_two)
    crash = [e for e in exits if e["pid"] == before["sup-1"]]
    assert crash and crash[0]["code"] == -signal.SIGKILL and not crash[0]["expected"]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert rows is not None and rows[0] == sum(
        1 for m in plan if m.valid and m.duplicate_of is None
    )


def test_autoscale_out_while_the_queue_grows_and_in_when_it_drains(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    with TcpFaultProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))) as pg:
        proxied = psycopg.conninfo.make_conninfo(
            pg_dsn, host="127.0.0.1", port=str(pg.port), sslmode="disable"
        )
        env, base = supervisor_env(
            emulator,
            queues,
            table_name,
            proxied,
            tmp_path,
            SLUICE_TARGET_BACKLOG_PER_WORKER="150",
            SLUICE_SCALE_OUT_COOLDOWN="2",
            SLUICE_SCALE_IN_COOLDOWN="6",
            SLUICE_BATCH_MAX_ROWS="40",
            SLUICE_LOAD_CONCURRENCY="1",
        )
        init_db(env)
        # Slow warehouse round trips keep each worker to tens of messages a second, so a
        # few bursts outgrow one worker and three can still drain them in seconds.
        pg.set_latency(0.05)
        supervisor = start_worker(env, tmp_path / "supervisor.log", "--autoscale", "1:3")
        try:
            wait_for(lambda: len(running_pids(base)) == 1, 30, "the minimum of one worker")
            bodies = [m.body for m in synthetic_stream(1800, malformed_ratio=0, duplicate_ratio=0)]
            for start in range(0, len(bodies), 600):
                sqs.send(emulator.endpoint, queues.url, bodies[start : start + 600])
            wait_for(lambda: len(running_pids(base)) == 3, 30, "a scale-out to three workers")
            wait_for(lambda: sqs.depth(emulator.endpoint, queues.url).total == 0, 120, "the drain")
            wait_for(lambda: len(running_pids(base)) == 1, 30, "a scale-in back to one worker")
            supervisor.signal(signal.SIGTERM)
            assert supervisor.wait(timeout=30) == 0
        finally:
            supervisor.kill()

    decisions = events(supervisor.log, "scale_decision")
    assert decisions, "every decision is logged"
    assert all({"backlog", "current", "desired", "reason"} <= d.keys() for d in decisions)
    acted = [d for d in decisions if d["direction"] != "hold"]
    directions = [d["direction"] for d in acted]
    assert directions[0] == "out" and directions[-1] == "in", directions
    assert acted[-1]["desired"] == 1
    assert acted[0]["reason"] == "below_min"  # start-up: the minimum, before any backlog
    assert all(d["reason"] == "backlog" for d in acted[1:])
    stamps = [_seconds(d["timestamp"]) for d in acted]
    outs = [t for t, d in zip(stamps, acted, strict=True) if d["direction"] == "out"]
    ins = [t for t, d in zip(stamps, acted, strict=True) if d["direction"] == "in"]
    # Cooldowns: scale-outs at least 2 s apart; a scale-in at least 6 s after any change.
    assert all(b - a >= 2 - 0.1 for a, b in itertools.pairwise(outs))
    for t in ins:
        previous = max(s for s in stamps if s < t)
        assert t - previous >= 6 - 0.1
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert rows is not None and rows[0] == len(set(bodies))


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_status_shows_a_known_queue_without_a_supervisor(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, (f'{{"n": {i}}}' for i in range(250)))
    sqs.send(emulator.endpoint, queues.dlq_url, (f'{{"d": {i}}}' for i in range(7)))
    env, _ = supervisor_env(emulator, queues, table_name, pg_dsn, tmp_path)
    done = run_sluice("status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["queue"] == {"visible": 250, "in_flight": 0, "delayed": 0, "dlq": 7, "age": 0.0}
    assert "need a supervisor" in doc["note"]
    table = run_sluice("status", env=env | {"COLUMNS": "120"})
    assert "250" in table.stdout and "dead-letter queue" in table.stdout


def test_scale_command_pins_a_running_supervisor(supervised: Supervised, tmp_path: Path) -> None:
    env, base = supervised.env, supervised.base
    supervisor = supervised.start("--autoscale", "1:2")
    wait_for(lambda: len(running_pids(base)) == 1, 30, "one worker")

    def scale(arg: str) -> subprocess.CompletedProcess[str]:
        return run_sluice("scale", arg, env=env, timeout=30)

    pinned = scale("3")
    assert pinned.returncode == 0, pinned.stderr
    assert "3 worker(s) desired" in pinned.stderr
    wait_for(lambda: len(running_pids(base)) == 3, 30, "three workers after `sluice scale 3`")
    assert status(base)["supervisor"]["pinned"] == 3
    assert scale("auto").returncode == 0
    # Handed back to the policy: three is above its maximum of two, which no cooldown holds;
    # the next step down (an empty queue asks for the minimum, one) waits for the scale-in
    # cooldown (300 s by default), and the decision says so.
    wait_for(lambda: len(running_pids(base)) == 2, 30, "the policy to bring it to its max")
    wait_for(
        lambda: (status(base).get("last_decision") or {}).get("reason") == "scale_in_cooldown",
        30,
        "the policy to hold for its scale-in cooldown",
    )
    # --watch --json: one document per refresh, until interrupted.
    watch = subprocess.Popen(
        [sys.executable, "-m", "sluice", "status", "--watch", "0.5", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        docs = [json.loads(watch.stdout.readline()) for _ in range(2)]
    finally:
        watch.terminate()
        watch.communicate(timeout=10)  # reaps it and closes its pipe
    assert all(d["workers"]["running"] == 2 for d in docs)
    bad = scale("many")
    assert bad.returncode == 2 and "WORKERS='many' is invalid" in bad.stderr
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not (tmp_path / "ctl" / "supervisor.sock").exists()
    t0 = time.monotonic()
    gone = scale("2")
    assert gone.returncode == 1 and "no supervisor answers" in gone.stderr
    assert time.monotonic() - t0 < 20


def test_bad_supervisor_settings_stop_start_up_naming_the_setting(
    emulator: Emulator, tmp_path: Path, duckdb_path: str
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    env = duckdb_worker_env(emulator.endpoint, queues.url, duckdb_path)
    for args, named in (
        (("--processes", "2"), "SLUICE_SINK=duckdb allows one writer process"),
        (("--autoscale", "3:1"), "--autoscale='3:1' is invalid"),
        (("--processes", "0"), "--processes='0' is invalid"),
    ):
        done = run_sluice("run", *args, env=env, timeout=30)
        assert done.returncode == 2, (args, done.stderr)
        assert named in done.stderr, done.stderr


def test_drain_with_several_processes_ends_when_every_worker_has_drained(
    supervised: Supervised, pg_dsn: str, table_name: str
) -> None:
    emulator, queues = supervised.emulator, supervised.queues
    plan = list(synthetic_stream(2500, malformed_ratio=0.01, duplicate_ratio=0.02, seed=4))
    sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
    supervisor = supervised.start("--processes", "3", "--drain")
    assert supervisor.wait(timeout=120) == 0
    exits = events(supervisor.log, "worker_exited")
    assert sorted(e["worker"] for e in exits) == ["sup-1", "sup-2", "sup-3"]
    assert all(e["code"] == 0 for e in exits)
    assert events(supervisor.log, "supervisor_drained")
    assert sqs.depth(emulator.endpoint, queues.url).total == 0
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()
    assert rows == (sum(1 for m in plan if m.valid and m.duplicate_of is None),)


def test_workers_stop_when_their_supervisor_is_killed(supervised: Supervised) -> None:
    supervisor = supervised.start("--processes", "2")
    wait_for(lambda: len(running_pids(supervised.base)) == 2, 30, "two workers running")
    children = list(running_pids(supervised.base).values())
    supervisor.kill()  # SIGKILL: the supervisor cannot stop anyone itself
    wait_for(
        lambda: not any(alive(pid) for pid in children),
        30,
        "orphaned workers to stop (PR_SET_PDEATHSIG)",
    )
