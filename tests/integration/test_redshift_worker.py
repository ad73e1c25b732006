"""`sluice init-db` and `sluice run --drain` with SLUICE_SINK=redshift, as real processes.

SQS is the fauxqs emulator; S3 and the Redshift Data API are moto server (no SQL runs
there, see tests/support/moto_redshift.py). What is checked: the worker wires the copy path
from its settings, stages each batch under its prefix, sends one five-statement transaction
per load, deletes messages only after the transaction finished, removes what it staged,
and keeps every message through a warehouse that refuses loads for a while.
"""

from __future__ import annotations

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
from tests.support.worker import init_db, start_worker, wait_for, worker_env

ROLE = "arn:aws:iam::123456789012:role/sluice-copy"


@pytest.fixture
def bucket(moto: str) -> str:
    name = f"stage-{uuid.uuid4().hex[:10]}"
    s3(moto).create_bucket(Bucket=name)
    return name


def s3(moto: str) -> Any:
    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS)


def redshift_worker_env(emulator: Emulator, moto: str, bucket: str, table: str) -> dict[str, str]:
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table,
        sink="redshift",
        extra={
            "REDSHIFT_CLUSTER_IDENTIFIER": "events",
            "REDSHIFT_DATABASE": "analytics",
            "REDSHIFT_DB_USER": "sluice",
            "SLUICE_S3_STAGING_URI": f"s3://{bucket}/stage",
            "SLUICE_REDSHIFT_IAM_ROLE": ROLE,
            "AWS_ENDPOINT_URL_S3": moto,
            "AWS_ENDPOINT_URL_REDSHIFT_DATA": moto,
            "SLUICE_BATCH_MAX_ROWS": "200",
            "SLUICE_MAX_HELD_MESSAGES": "1000",
            "SLUICE_RETRY_MAX_BACKOFF": "0.5",
        },
    )
    return env


@pytest.fixture
def schema_rules(moto: str) -> Any:
    def install(table: str, *extra: dict[str, Any]) -> None:
        records = column_records(load_mapping(None, table))
        control(moto, rules=[{"match": "information_schema", "records": records}, *extra])

    yield install
    control(moto, rules=[], describes_before_done=1)


def test_a_redshift_worker_stages_copies_merges_then_deletes(
    emulator: Emulator, moto: str, bucket: str, schema_rules: Any, tmp_path: Path
) -> None:
    table = f"t_{uuid.uuid4().hex[:10]}"
    schema_rules(table)
    env = redshift_worker_env(emulator, moto, bucket, table)
    before = len(history(moto))
    init_db(env)
    created = history(moto)[before:]
    assert any(s.startswith(f'CREATE TABLE IF NOT EXISTS "{table}"') for s in created)
    assert any("SORTKEY" in s and "SUPER" in s for s in created)

    bodies = [m.body for m in synthetic_stream(1000, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], bodies)
    before = len(history(moto))
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]

    sent = history(moto)[before:]
    copies = [s for s in sent if s.startswith("COPY")]
    merges = [s for s in sent if s.startswith(f'INSERT INTO "{table}"')]
    assert len(copies) == len(merges) >= 5  # batches of about 200
    assert all(f"FROM 's3://{bucket}/stage/" in c and f"IAM_ROLE '{ROLE}'" in c for c in copies)
    assert len(set(copies)) == len(copies)  # a unique prefix per load
    depth = sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"])
    assert depth.total == 0  # every message deleted after its load
    assert s3(moto).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_messages_wait_in_the_queue_while_redshift_refuses_loads(
    emulator: Emulator, moto: str, bucket: str, schema_rules: Any, tmp_path: Path
) -> None:
    table = f"t_{uuid.uuid4().hex[:10]}"
    conflict = "ERROR: 1023 DETAIL: Serializable isolation violation on table - 1234"
    refuse = {"match": "^LOCK", "status": "FAILED", "error": conflict}
    schema_rules(table, refuse)
    env = redshift_worker_env(emulator, moto, bucket, table)
    bodies = [m.body for m in synthetic_stream(300, malformed_ratio=0, duplicate_ratio=0)]
    sqs.send(emulator.endpoint, env["SQS_QUEUE_URL"], bodies)
    before = len(history(moto))
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    try:
        wait_for(
            # the sink reruns a 1023 a few times itself before the pipeline sees it
            lambda: (
                sum(s.startswith("LOCK") for s in history(moto)[before:]) >= 3
                and '"load_failed"' in worker.log
            ),
            60,
            "refused loads reaching the pipeline",
            step=0.2,
        )
        assert sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"]).total == 300  # none deleted
        refused = [line for line in worker.log.splitlines() if '"load_failed"' in line]
        assert refused and all("1023" in r and "TransientError" in r for r in refused)
        schema_rules(table)  # the conflict clears
        assert worker.wait(timeout=120) == 0, worker.log[-3000:]
    finally:
        worker.kill()
    assert sqs.depth(emulator.endpoint, env["SQS_QUEUE_URL"]).total == 0
    assert sqs.dlq_reasons(emulator.endpoint, env["SLUICE_DLQ_URL"]) == {}
    assert s3(moto).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
