"""/metrics counts match the work done; /healthz and /readyz answer as documented."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.worker import init_db, start_worker, wait_for, worker_env


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "worker"))
            found[(sample.name, labels)] = sample.value
    return found


def test_metrics_health_and_readiness(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    plan = list(synthetic_stream(1200, malformed_ratio=0.02, duplicate_ratio=0.03, seed=5))
    queues = sqs.make_queues(emulator.endpoint)
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"PORT": str(port), "SLUICE_QUEUE_ATTRIBUTES_INTERVAL": "1"},
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "/readyz to turn ready")
        assert get(f"{base}/healthz")[0] == 200
        sqs.send(emulator.endpoint, queues.url, (m.body for m in plan))
        valid = sum(1 for m in plan if m.valid and m.duplicate_of is None)
        dups = sum(1 for m in plan if m.duplicate_of is not None)
        bad = sum(1 for m in plan if not m.valid)

        def settled() -> bool:
            found = samples(get(f"{base}/metrics")[1])
            done = sum(
                found.get(("sluice_messages_total", (("outcome", o),)), 0)
                for o in ("loaded", "duplicate", "dead_lettered")
            )
            deleted = found.get(("sluice_messages_total", (("outcome", "deleted"),)), 0)
            # Deletes follow the commit: wait for both, or a loaded machine sees them apart.
            return done >= len(plan) and deleted >= len(plan)

        wait_for(settled, 60, "every message counted and deleted in /metrics")
        found = samples(get(f"{base}/metrics")[1])
        outcome = {
            o: found[("sluice_messages_total", (("outcome", o),))]
            for o in ("received", "loaded", "duplicate", "dead_lettered", "deleted")
        }
        assert outcome == {
            "received": len(plan),
            "loaded": valid,
            "duplicate": dups,
            "dead_lettered": bad,
            "deleted": len(plan),
        }
        assert found[("sluice_messages_held", ())] == 0
        assert found[("sluice_circuit_state", (("state", "closed"),))] == 1
        assert found[("sluice_batch_rows_count", ())] >= 1
        assert found[("sluice_load_seconds_sum", ())] > 0
        reasons = sum(v for (name, _), v in found.items() if name == "sluice_dead_letters_total")
        assert reasons == bad
        wait_for(
            lambda: samples(get(f"{base}/metrics")[1]).get(("sluice_dlq_messages", ()), 0) == bad,
            10,
            "DLQ depth in /metrics",
        )

        # The warehouse refuses loads: the circuit opens and /readyz says why.
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{table_name}"')
        sqs.send(emulator.endpoint, queues.url, [plan[0].body])
        wait_for(lambda: get(f"{base}/readyz")[0] == 503, 30, "/readyz to report the outage")
        _, body = get(f"{base}/readyz")
        assert "circuit" in body
        assert get(f"{base}/healthz")[0] == 200  # alive all the same
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait(timeout=30)
