"""No SLUICE_SINK, as real processes: the old deployment's variables give a Redshift worker
(SQS is the emulator, S3 and the Data API the moto stand-in), and settings that name no
warehouse make `run` and `init-db` refuse, leaving the queue and the working directory
alone. Before, both loaded into ./sluice.duckdb and deleted the messages from SQS."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from sluice.local.emulator import EMULATOR_CREDENTIALS, Emulator
from sluice.mapping import load_mapping
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.moto_control import column_records, control, history
from tests.support.worker import worker_env

ROLE = "arn:aws:iam::123456789012:role/sluice-copy"


def sluice_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`sluice ...` run from ``cwd``, where a default DuckDB file would appear."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env | {"COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def no_sink_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=f"t_{uuid.uuid4().hex[:10]}",
        extra=extra,
    )
    del env["SLUICE_SINK"]
    return env


def embedded_files(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.iterdir() if "duckdb" in p.name)


def test_without_a_warehouse_run_and_init_db_refuse_on_one_line(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = no_sink_env(emulator)
    bodies = [m.body for m in synthetic_stream(30, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], bodies)
    for command in (["run", "--drain"], ["run"], ["init-db"], ["init-db", "--print"]):
        done = sluice_in(tmp_path, env, *command)
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, done.stderr)
        assert lines[0].startswith("sluice: error: no warehouse chosen: set SLUICE_SINK=redshift")
        assert "SLUICE_SINK=postgres" in lines[0] and "SLUICE_SINK=duckdb" in lines[0]
    assert embedded_files(tmp_path) == []
    assert sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"]).visible == 30
    shown = sluice_in(tmp_path, env, "config", "show")
    assert shown.returncode == 0, shown.stderr  # inspecting settings needs no sink


def test_redshift_settings_beside_a_database_url_are_refused_as_ambiguous(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = no_sink_env(
        emulator,
        REDSHIFT_CLUSTER_IDENTIFIER="events",
        REDSHIFT_DATABASE="analytics",
        REDSHIFT_DB_USER="sluice",
        SLUICE_DATABASE_URL="postgresql://sluice:hunter2@127.0.0.1:1/x",
    )
    done = sluice_in(tmp_path, env, "run", "--drain")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "sluice: error: SLUICE_SINK is not set and both REDSHIFT_CLUSTER_IDENTIFIER and "
        "SLUICE_DATABASE_URL are: set SLUICE_SINK=redshift or SLUICE_SINK=postgres"
    )
    assert embedded_files(tmp_path) == []


@pytest.fixture
def bucket(moto: str) -> str:
    name = f"stage-{uuid.uuid4().hex[:10]}"
    s3(moto).create_bucket(Bucket=name)
    return name


def s3(moto: str) -> Any:
    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)


def test_the_old_deployments_variables_and_s3_staging_make_a_redshift_worker(
    emulator: Emulator, moto: str, bucket: str, tmp_path: Path
) -> None:
    env = no_sink_env(
        emulator,
        # The old consumer's variables, as its deployment sets them...
        REDSHIFT_CLUSTER_IDENTIFIER="events",
        REDSHIFT_DATABASE="analytics",
        REDSHIFT_DB_USER="sluice",
        ENABLE_SQS_CONSUMER="true",
        # ...plus the staging settings for COPY, and the stand-ins' endpoints.
        SLUICE_S3_STAGING_URI=f"s3://{bucket}/stage",
        SLUICE_REDSHIFT_IAM_ROLE=ROLE,
        AWS_ENDPOINT_URL_S3=moto,
        AWS_ENDPOINT_URL_REDSHIFT_DATA=moto,
        SLUICE_BATCH_MAX_ROWS="200",
        SLUICE_MAX_HELD_MESSAGES="1000",
    )
    table = env["REDSHIFT_TABLE_NAME"]
    records = column_records(load_mapping(None, table))
    control(moto, rules=[{"match": "information_schema", "records": records}])
    try:
        before = len(history(moto))
        created = sluice_in(tmp_path, env, "init-db")
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip().endswith("(redshift)")
        assert any(s.startswith(f'CREATE TABLE IF NOT EXISTS "{table}"') for s in history(moto))

        bodies = [m.body for m in synthetic_stream(600, malformed_ratio=0, duplicate_ratio=0)]
        sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], bodies)
        drained = sluice_in(tmp_path, env, "run", "--drain")
        assert drained.returncode == 0, drained.stderr[-3000:]
    finally:
        control(moto, rules=[], describes_before_done=1)
    sent = history(moto)[before:]
    copies = [s for s in sent if s.startswith("COPY")]
    assert copies and all(f"FROM 's3://{bucket}/stage/" in c for c in copies)
    assert any(s.startswith(f'INSERT INTO "{table}"') for s in sent)
    assert sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"]).total == 0
    assert embedded_files(tmp_path) == []  # never a DuckDB file
    logs = (drained.stdout + drained.stderr).splitlines()
    started = next(line for line in logs if '"event":"started"' in line)
    assert '"sink":"redshift"' in started
    assert '"sink_inferred_from":"REDSHIFT_CLUSTER_IDENTIFIER"' in started
