"""Issue 12, item 10 through the real CLI (`python -m sluice ...`): settings options before or
after the command, hidden test-only options, `config show` and `dlq show` whole in a pipe and
as JSON, `status` without a supervisor, and `plan` contacting nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from sluice.local.emulator import Emulator
from tests.support import sqs
from tests.support.worker import run_sluice, worker_env

SECRET = "s3cretPW"


def _env(**extra: str) -> dict[str, str]:
    """Settings that point at nothing listening: these commands must not need it."""
    env = worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/000000000000/not-contacted",
        dlq_url=None,
        table="t_cli_options",
        sink="duckdb",
        duckdb_path="not-created.duckdb",
        extra=extra,
    )
    return env | {"COLUMNS": "80"}  # what Rich assumes in a pipe


def _shown(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = run_sluice(*args, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_settings_options_work_before_and_after_the_command_and_the_later_wins(
    tmp_path: Path,
) -> None:
    env = _env()
    dsn = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
    before = _shown(
        "--sink", "postgres", "--database-url", dsn, "config", "show", "--json", env=env
    )
    after = _shown("config", "show", "--sink", "postgres", "--database-url", dsn, "--json", env=env)
    for doc in (before, after):
        assert doc["sink"] == {
            "value": "postgres",
            "variable": "SLUICE_SINK",
            "source": "flag",
            "from": "--sink",
        }
        assert doc["database_url"]["value"] == "postgresql://u:***@127.0.0.1:1/x"
    both = _shown(
        "--batch-max-rows", "7", "config", "show", "--batch-max-rows", "9", "--json", env=env
    )
    assert both["batch_max_rows"]["value"] == "9"
    # --config after the command too.
    toml = tmp_path / "sluice.toml"
    toml.write_text("max_messages = 4\n")
    from_file = _shown("config", "show", "--config", str(toml), "--json", env=env)
    assert from_file["max_messages"] == {
        "value": "4",
        "variable": "SQS_MAX_MESSAGES",
        "source": "file",
        "from": str(toml),
    }
    assert SECRET not in json.dumps([before, after])


def test_run_takes_settings_after_the_command() -> None:
    # `sluice run --sink postgres` was refused ("No such option"); now the flag reaches the
    # settings, which here refuse for want of a database URL: the sign it was read.
    done = run_sluice("run", "--sink", "postgres", env=_env(), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "No such option" not in done.stderr
    assert "SLUICE_DATABASE_URL is required" in done.stderr
    bad = run_sluice("run", "--max-messages", "50", env=_env(), timeout=60)
    assert bad.returncode == 2 and "--max-messages='50' is invalid" in bad.stderr, bad.stderr
    helped = run_sluice("run", "--help", env=_env(), timeout=60)
    assert "the one after the command wins" in " ".join(helped.stdout.split())


def test_test_only_fault_options_are_hidden_but_still_work() -> None:
    env = _env(SLUICE_FAULT_POINT="before_commit")
    for args in (("--help",), ("run", "--help"), ("config", "show", "--help")):
        done = run_sluice(*args, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "--fault" not in done.stdout, args
    doc = _shown("config", "show", "--fault-after", "3", "--json", env=env)
    assert doc["fault_point"]["value"] == "before_commit"
    assert doc["fault_point"]["source"] == "environment"
    assert doc["fault_after"]["value"] == "3"


def test_config_show_in_a_pipe_prints_whole_values_and_their_sources(tmp_path: Path) -> None:
    mapping = tmp_path / ("a-mapping-directory-with-a-long-name-" * 4) / "appsflyer.toml"
    dsn = f"postgresql://sluice:{SECRET}@warehouse.internal.example.com:5432/events?sslmode=require"
    env = _env(SLUICE_MAPPING_FILE=str(mapping), SLUICE_SINK="postgres", SLUICE_DATABASE_URL=dsn)
    done = run_sluice("config", "show", "--port", "9100", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in done.stdout.splitlines()}
    assert lines["mapping_file"] == [
        "mapping_file",
        "SLUICE_MAPPING_FILE",
        str(mapping),
        "environment SLUICE_MAPPING_FILE",
    ]
    assert lines["database_url"][2] == dsn.replace(SECRET, "***")
    assert lines["port"][2:] == ["9100", "flag --port"]
    assert lines["max_held_messages"][3] == "default"
    assert lines["worker_id"][3] == "derived"
    assert SECRET not in done.stdout + done.stderr


def test_plan_in_the_guides_notation_contacts_nothing() -> None:
    # Everything Sluice could contact points at a socket that listens but never answers: a
    # benchmark or a depth read would connect to it (and hang); plain arithmetic does not.
    with socket.create_server(("127.0.0.1", 0)) as trap:
        port = trap.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        env = _env(
            AWS_ENDPOINT_URL_SQS=endpoint,
            SQS_QUEUE_URL=f"{endpoint}/000000000000/production",
            SLUICE_DLQ_URL=f"{endpoint}/000000000000/production-dlq",
            SLUICE_SINK="postgres",
            SLUICE_DATABASE_URL=f"postgresql://u:{SECRET}@127.0.0.1:{port}/events",
        )
        args = ("plan", "--backlog", "2.8M", "--arrival", "600k/day", "--deadline", "24h")
        table = run_sluice(*args, env=env | {"COLUMNS": "200"}, timeout=60)
        plans = run_sluice(*args, "--worker-rate", "guide", "--json", env=env, timeout=60)
        trap.setblocking(False)
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody connected
    assert table.returncode == 0, table.stderr
    assert "workers to clear the backlog in 1d 0h" in table.stdout
    assert "documented" in table.stdout and "docs/performance.md" in table.stdout
    assert plans.returncode == 0, plans.stderr
    guide = json.loads(plans.stdout)[0]
    assert guide["inputs"]["backlog"] == 2_800_000
    assert guide["inputs"]["arrival_per_second"] == pytest.approx(600_000 / 86_400)
    # ceil((2,800,000 / 86,400 s + 6.944/s) / 2/s) = ceil(19.68) = 20
    assert guide["workers_for_deadline"] == 20
    bad = run_sluice("plan", "--backlog", "2.8X", env=env, timeout=60)
    assert bad.returncode == 2 and "--backlog: '2.8X' is not a count" in bad.stderr


def test_dlq_show_prints_whole_bodies_in_a_pipe_and_json(emulator: Emulator) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    body = json.dumps({"event_name": "install", "payload": "x" * 400, "end": "THE-END"})

    async def put(client: Any) -> None:
        await client.send_message(
            QueueUrl=queues.dlq_url,
            MessageBody=body,
            MessageAttributes={
                "sluice.reason": {"DataType": "String", "StringValue": "wrong_type"},
                "sluice.detail": {"DataType": "String", "StringValue": "event_time: not a time"},
                "sluice.source_message_id": {"DataType": "String", "StringValue": "src-1"},
                "producer": {"DataType": "String", "StringValue": "appsflyer-push"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffok"},
            },
        )

    sqs.with_client(emulator.endpoint, put)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table="t",
        sink="duckdb",
        duckdb_path="unused.duckdb",
    ) | {"COLUMNS": "80"}
    piped = run_sluice("dlq", "show", env=env, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert f"body: {body}\n" in piped.stdout
    assert "reason: wrong_type" in piped.stdout
    assert "attribute producer (String): appsflyer-push" in piped.stdout
    as_json = run_sluice("dlq", "show", "--json", env=env, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    letters = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["body"] == body
    assert letter["reason"] == "wrong_type"
    assert letter["detail"] == "event_time: not a time"
    assert letter["source_message_id"] == "src-1"
    assert letter["receive_count"] >= 1 and letter["id"]
    assert letter["attributes"] == {
        "blob": {"type": "Binary", "base64": "AP9vaw=="},
        "producer": {"type": "String", "value": "appsflyer-push"},
    }
    assert sqs.dlq_reasons(emulator.endpoint, queues.dlq_url) == {"wrong_type": 1}  # kept


def test_status_without_a_supervisor_says_so_in_one_plain_line(
    emulator: Emulator, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    sqs.send(emulator.endpoint, queues.url, ['{"n": 1}', '{"n": 2}'])
    socket_path = tmp_path / "control" / "supervisor.sock"
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table="t",
        sink="duckdb",
        duckdb_path="unused.duckdb",
        extra={"SLUICE_CONTROL_SOCKET": str(socket_path)},
    ) | {"COLUMNS": "300"}
    done = run_sluice("status", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert f"no supervisor answers at {socket_path}; showing the queue only" in flat
    assert "Error" not in done.stdout + done.stderr  # no connector exception's name
    doc = _shown("status", "--json", env=env)
    assert doc["queue"]["visible"] == 2 and doc["supervisor"] is None
    down = run_sluice("status", env=env | {"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1"})
    assert down.returncode == 1
    assert down.stderr.startswith(
        f"sluice: error: no supervisor answers at {socket_path}, and the queue could not be read"
    )
