"""ENABLE_SQS_CONSUMER=false as a real process: it passes its probes and consumes nothing.

The Kubernetes liveness probe and the ECS health check ask /healthz; a paused worker that
served nothing was restarted again and again. It must answer /healthz and /metrics, say
"disabled" on /readyz (200: it passes, so the rollout that pauses it completes) and in
`sluice status`, take no message from a queue that holds some, need no warehouse (its DSN
points at a closed port here), and stop at once on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sluice.local.emulator import Emulator, free_port
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.worker import run_sluice, start_worker, wait_for, worker_env

CLOSED_DSN = "postgresql://sluice@127.0.0.1:1/nowhere"  # nothing listens: never opened


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answers(url: str) -> bool:
    try:
        get(url)
    except OSError:
        return False
    return True


def paused_env(emulator: Emulator, tmp_path: Path, spelling: str) -> tuple[dict[str, str], int]:
    queues = sqs.make_queues(emulator.endpoint)
    port = free_port()
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table="t_paused",
        database_url=CLOSED_DSN,
        extra={
            "ENABLE_SQS_CONSUMER": spelling,
            "PORT": str(port),
            "SLUICE_HTTP_HOST": "127.0.0.1",
            "SLUICE_CONTROL_SOCKET": str(tmp_path / "control" / "sluice.sock"),
        },
    )
    return env, port


@pytest.mark.parametrize("spelling", ["FALSE", "0"])
def test_a_paused_worker_passes_its_health_checks_and_consumes_nothing(
    emulator: Emulator, tmp_path: Path, spelling: str
) -> None:
    env, port = paused_env(emulator, tmp_path, spelling)
    bodies = [m.body for m in synthetic_stream(50, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], bodies)
    base = f"http://127.0.0.1:{port}"
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: answers(f"{base}/healthz"), 30, "the paused worker's /healthz")
        assert get(f"{base}/healthz") == (200, '{"status": "alive"}')
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert 'sluice_consumer_enabled{worker="' in metrics and "} 0.0" in metrics
        status, ready = get(f"{base}/readyz")
        assert status == 200  # passes: a failing gate would stall the rollout that pauses it
        assert json.loads(ready)["status"] == "disabled"
        assert "ENABLE_SQS_CONSUMER=false" in ready

        over_http = run_sluice("status", "--url", base, "--json", env=env, timeout=30)
        assert over_http.returncode == 0, over_http.stderr
        assert json.loads(over_http.stdout)["consumer"] == "disabled"
        on_socket = run_sluice("status", "--json", env=env, timeout=30)
        assert on_socket.returncode == 0, on_socket.stderr
        assert json.loads(on_socket.stdout)["consumer"] == "disabled"
        table = run_sluice("status", env=env | {"COLUMNS": "160"}, timeout=30)
        assert table.returncode == 0, table.stderr
        assert "consumer disabled" in table.stdout

        depth = sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"])
        assert (depth.visible, depth.in_flight) == (50, 0)  # nothing received, ever
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0, worker.log[-3000:]
    finally:
        worker.kill()
    assert '"event":"consumer_disabled"' in worker.log
    assert "nowhere" not in worker.log  # the warehouse was never tried
    assert not (tmp_path / "control" / "sluice.sock").exists()  # its socket removed at exit
    depth = sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"])
    assert (depth.visible, depth.in_flight) == (50, 0)


def test_a_paused_drain_has_nothing_to_do(emulator: Emulator, tmp_path: Path) -> None:
    env, _ = paused_env(emulator, tmp_path, "false")
    sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], ['{"a": 1}'])
    done = run_sluice("run", "--drain", env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "consumer disabled (ENABLE_SQS_CONSUMER=false): nothing drained" in done.stderr
    assert sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"]).visible == 1
