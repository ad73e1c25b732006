"""`python -m sluice ...` as an operator runs it: help, settings, init-db, send, dlq."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from sluice.local.emulator import Emulator
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.worker import start_worker, wait_for, worker_env

SECRET = "s3cretPW"
SECRET_DSN = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
PLACEHOLDER_QUEUE = "http://127.0.0.1:1/000000000000/not-contacted"


def sluice(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env | {"COLUMNS": "220", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _offline_env(**extra: str) -> dict[str, str]:
    """Settings for commands that fail before touching SQS or the database."""
    return worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url=PLACEHOLDER_QUEUE,
        dlq_url=None,
        table="t_cli",
        database_url=SECRET_DSN,
        extra=extra,
    )


# -- help and settings --------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    done = sluice(_offline_env(), "--help")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"run", "demo", "send", "dlq", "init-db", "config"} <= listed


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SQS_MAX_MESSAGES": "50"}, "SQS_MAX_MESSAGES"),
        ({"SQS_WAIT_TIME_SECONDS": "-1"}, "SQS_WAIT_TIME_SECONDS"),
        ({"ENABLE_SQS_CONSUMER": "maybe"}, "ENABLE_SQS_CONSUMER"),
        ({"REDSHIFT_TABLE_NAME": "x; drop table y"}, "REDSHIFT_TABLE_NAME"),
        ({"SLUICE_DATABASE_URL": None}, "SLUICE_DATABASE_URL"),
        ({"SLUICE_DATABASE_URL": f"mysql://u:{SECRET}@db/x"}, "SLUICE_DATABASE_URL"),
        ({"SLUICE_BATCH_MAX_AGE": "5"}, "SLUICE_BATCH_MAX_AGE"),  # >= half the visibility
    ],
    ids=[
        "max-messages",
        "wait-time",
        "enable-consumer",
        "table-name",
        "postgres-without-url",
        "url-not-postgres",
        "batch-age-vs-visibility",
    ],
)
def test_run_refuses_bad_settings_in_one_line(change: dict[str, str | None], named: str) -> None:
    env = _offline_env()
    for key, value in change.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    assert env["SLUICE_SINK"] == "postgres"
    done = sluice(env, "run")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert SECRET not in done.stdout + done.stderr


def test_config_show_masks_the_password() -> None:
    done = sluice(_offline_env(), "config", "show")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "postgresql://u:***@127.0.0.1:1/x" in done.stdout
    assert "SLUICE_DATABASE_URL" in done.stdout


def test_init_db_with_unreachable_database_keeps_the_password_secret() -> None:
    done = sluice(_offline_env(), "init-db")
    assert done.returncode not in (0, 2), done.stderr
    assert done.stderr.startswith("sluice: error:"), done.stderr
    assert "127.0.0.1" in done.stderr  # says where it tried
    assert SECRET not in done.stdout + done.stderr


# -- the table ----------------------------------------------------------------------------


def _columns(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_init_db_creates_the_table_then_finds_it(pg_dsn: str, table_name: str) -> None:
    env = worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url=PLACEHOLDER_QUEUE,
        dlq_url=None,
        table=table_name,
        database_url=pg_dsn,
    )
    first = sluice(env, "init-db")
    assert first.returncode == 0, first.stderr
    assert f"table {table_name} created" in first.stdout
    assert {"dedupe_key", "message_id", "event_name", "raw_event", "loaded_at"} <= _columns(
        pg_dsn, table_name
    )
    second = sluice(env, "init-db")
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout


def test_run_refuses_a_table_missing_a_column(
    emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
    )
    assert sluice(env, "init-db").returncode == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{table_name}" DROP COLUMN media_source')
    sqs.send(emulator.endpoint, queues.url, ['{"never": "loaded"}'])

    done = sluice(env, "run", "--drain")
    assert done.returncode == 3, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("sluice: error:")]
    assert len(error) == 1, done.stderr
    assert "media_source" in error[0]
    assert "missing" in error[0]
    assert sqs.depth(emulator.endpoint, queues.url).visible == 1  # nothing was consumed


# -- send and the dead-letter queue --------------------------------------------------------


def _reason_table(text: str) -> Counter[str]:
    """``reason | count`` rows of a rich table, whatever its box characters."""
    found: Counter[str] = Counter()
    for match in re.finditer(r"^\W*([a-z_]+)\W+(\d+)\W*$", text, re.M):
        found[match.group(1)] = int(match.group(2))
    return found


def test_send_then_dlq_stats_show_replay_and_purge(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
    )
    assert sluice(env, "init-db").returncode == 0
    # What `send` generates with its defaults (seed 7, no duplicates).
    plan = list(synthetic_stream(200, malformed_ratio=0.1, duplicate_ratio=0.0, seed=7))
    expected = Counter(m.expected_reason.value for m in plan if m.expected_reason)
    assert len(expected) >= 2

    sent = sluice(env, "send", "--count", "200", "--malformed-ratio", "0.1")
    assert sent.returncode == 0, sent.stderr
    assert "sent 200 message(s)" in sent.stderr
    assert sqs.depth(emulator.endpoint, queues.url).visible == 200

    worker = start_worker(env, tmp_path / "drain.log", "--drain")
    assert worker.wait(timeout=60) == 0, worker.log[-3000:]

    stats = sluice(env, "dlq", "stats")
    assert stats.returncode == 0, stats.stderr
    shown = _reason_table(stats.stdout)
    assert {r: shown[r] for r in expected} == dict(expected), stats.stdout
    assert f"{sum(expected.values())} visible" in stats.stdout

    show = sluice(env, "dlq", "show", "--limit", "100")
    assert show.returncode == 0, show.stderr
    for reason in expected:
        assert reason in show.stdout
    assert sqs.dlq_reasons(emulator.endpoint, queues.dlq_url) == expected  # looking consumed none

    replayed_reason, replayed_count = expected.most_common()[-1]
    replay = sluice(env, "dlq", "replay", "--filter", replayed_reason)
    assert replay.returncode == 0, replay.stderr
    rest = sum(expected.values()) - replayed_count
    assert f"replayed {replayed_count}, left {rest} in the DLQ" in replay.stderr
    assert sqs.dlq_reasons(emulator.endpoint, queues.dlq_url) == expected - Counter(
        {replayed_reason: replayed_count}
    )
    replayed = [
        m.body for m in plan if m.expected_reason and m.expected_reason.value == (replayed_reason)
    ]
    # dlq_bodies peeks any queue: here the source queue, where the replayed bodies are.
    assert sorted(sqs.dlq_bodies(emulator.endpoint, queues.url)) == sorted(replayed)

    refused = sluice(env, "dlq", "purge")
    assert refused.returncode not in (0, 2), refused.stderr
    assert "--yes" in refused.stderr
    assert sum(sqs.dlq_reasons(emulator.endpoint, queues.dlq_url).values()) == rest

    purged = sluice(env, "dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    wait_for(
        lambda: sqs.depth(emulator.endpoint, queues.dlq_url).total == 0, 10, "the DLQ to empty"
    )


def test_init_db_print_emits_the_redshift_ddl_and_connects_to_nothing() -> None:
    env = _offline_env(
        SLUICE_SINK="redshift",
        REDSHIFT_TABLE_NAME="appsflyer_events",
        REDSHIFT_CLUSTER_IDENTIFIER="events",
        REDSHIFT_DATABASE="analytics",
        REDSHIFT_DB_USER="sluice",
    )
    done = sluice(env, "init-db", "--print")
    assert done.returncode == 0, done.stderr
    golden = Path(__file__).parents[1] / "unit" / "golden" / "redshift_appsflyer_ddl.sql"
    assert done.stdout == golden.read_text()
