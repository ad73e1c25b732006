"""Data Locker end to end: gzip CSV objects in the emulator's S3, their notifications on
SQS, real `sluice run` processes, PostgreSQL. Checked by the total-queue checker over rows.

Three hourly folders of 100,000-row objects, each with its _SUCCESS marker and the marker's
notification; one object announced twice (and once inside an SNS envelope); an s3:TestEvent;
a corrupt object; an object that was never written; five rows that do not fit the mapping.
A second scenario SIGKILLs a worker half-way through an object and restarts it.
"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

import psycopg

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.tools.checker import check, file_rows_sent, key_function
from sluice.tools.data_locker import (
    TEST_EVENT,
    folder,
    gzip_csv,
    notification,
    parquet,
    synth_rows,
)
from tests.support import s3, scenario, sqs
from tests.support.worker import init_db, start_worker, wait_for, worker_env

ROWS = 100_000
MAPPING = "appsflyer_data_locker"
BAD_ROWS = (7, 20_001, 50_000, 77_777, 99_999)


def data_locker_env(emulator: Emulator, queues: sqs.Queues, dsn: str, table: str) -> dict[str, str]:
    return worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table,
        database_url=dsn,
        extra={
            "SLUICE_MAPPING_FILE": MAPPING,
            "AWS_ENDPOINT_URL_S3": emulator.endpoint,
            "SLUICE_BATCH_MAX_ROWS": "5000",
            "SLUICE_VISIBILITY_TIMEOUT": "6",
        },
    )


def dlq_reasons(emulator: Emulator, queues: sqs.Queues) -> dict[str, int]:
    return dict(sqs.dlq_reasons(emulator.endpoint, queues.dlq_url))


def test_hourly_folders_load_exactly_once_with_markers_duplicates_and_bad_objects(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    bucket = s3.make_bucket(emulator.endpoint)
    queues = sqs.make_queues(emulator.endpoint)
    env = data_locker_env(emulator, queues, pg_dsn, table_name)
    init_db(env)

    expected: list[tuple[dict[str, str], bool]] = []
    bodies: list[str] = [TEST_EVENT]
    for hour in range(3):
        start = datetime(2024, 5, 1, hour)
        prefix = folder("data-locker", "inapps", start)
        bad = BAD_ROWS if hour == 1 else ()
        rows = list(synth_rows(ROWS, seed=100 + hour, hour=start, bad_rows=bad))
        expected.extend((row, number not in bad) for number, row in enumerate(rows, 1))
        body = gzip_csv(rows)
        key = f"{prefix}part-00000-{hour}.csv.gz"
        etag = s3.put(emulator.endpoint, bucket, key, body)
        # fauxqs 1.9.2 answers an empty PutObject with a 500: this marker holds a newline
        # (Sluice never reads a marker; its name decides).
        marker = s3.put(emulator.endpoint, bucket, f"{prefix}_SUCCESS", b"\n")
        bodies.append(notification(bucket, key, size=len(body), etag=etag, sns=hour == 2))
        bodies.append(notification(bucket, f"{prefix}_SUCCESS", etag=marker))
        if hour == 0:  # S3 delivers at least once: the same object announced again
            bodies.append(notification(bucket, key, size=len(body), etag=etag, sns=True))

    corrupt = gzip_csv(list(synth_rows(1000, seed=999)))
    corrupt = corrupt[:200] + bytes(b ^ 0x5A for b in corrupt[200:400]) + corrupt[400:]
    corrupt_key = "data-locker/t=inapps/dt=2024-05-01/h=3/part-00000-bad.csv.gz"
    corrupt_etag = s3.put(emulator.endpoint, bucket, corrupt_key, corrupt)
    bodies.append(notification(bucket, corrupt_key, etag=corrupt_etag))
    bodies.append(notification(bucket, "data-locker/t=inapps/dt=2024-05-01/h=4/never.csv.gz"))
    expected.extend((row, False) for row in synth_rows(1000, seed=999))
    assert sqs.send(emulator.endpoint, queues.url, bodies) == len(bodies)

    stats = scenario.drain(env, tmp_path / "drain.log", timeout=240)

    good = 3 * ROWS - len(BAD_ROWS)
    rows = scenario.target_rows(pg_dsn, table_name)
    assert sum(rows.values()) == good
    reasons = dlq_reasons(emulator, queues)
    assert reasons == {"row_does_not_fit": len(BAD_ROWS), "corrupt_object": 1, "object_missing": 1}
    assert stats["rowsInserted"] == good
    report = check(
        file_rows_sent(expected),
        rows,
        sorted(set(sqs.dlq_bodies(emulator.endpoint, queues.dlq_url))),
        sqs.depth(emulator.endpoint, queues.url).total,
        key_function(load_mapping(MAPPING, table_name)),
        min_messages=good,
    )
    assert report.ok, report.summary()
    with psycopg.connect(pg_dsn) as conn:
        sample = conn.execute(
            "SELECT event_time, event_value->>'note', raw_event->>'City', campaign "
            f'FROM "{table_name}" LIMIT 1'
        ).fetchone()
    assert sample is not None
    assert sample[1] == 'a "quoted", comma'
    assert sample[2] == "Zürich"


def test_a_worker_killed_half_way_through_an_object_then_restarted_loads_it_exactly_once(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    bucket = s3.make_bucket(emulator.endpoint)
    queues = sqs.make_queues(emulator.endpoint)
    env = data_locker_env(emulator, queues, pg_dsn, table_name) | {"WORKER_ID": table_name}
    init_db(env)
    rows = list(synth_rows(ROWS, seed=7))
    body = gzip_csv(rows)
    key = "t=installs/dt=2024-05-01/h=5/part-00000.csv.gz"
    etag = s3.put(emulator.endpoint, bucket, key, body)
    sqs.send(emulator.endpoint, queues.url, [notification(bucket, key, size=len(body), etag=etag)])

    worker = start_worker(env, tmp_path / "killed.log")
    try:
        wait_for(
            lambda: scenario.row_count(pg_dsn, table_name) >= ROWS // 4,
            120,
            "a quarter of the object loaded",
            step=0.02,
        )
        worker.signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
    scenario.wait_sessions_gone(pg_dsn, [table_name])
    loaded_before = scenario.row_count(pg_dsn, table_name)
    assert ROWS // 4 <= loaded_before < ROWS, loaded_before

    stats = scenario.drain(env | {"WORKER_ID": f"{table_name}-2"}, tmp_path / "drain.log", 240)
    rows_found = scenario.target_rows(pg_dsn, table_name)
    assert sum(rows_found.values()) == ROWS
    assert stats["rowsInserted"] == ROWS - loaded_before
    assert stats["duplicatesAbsorbed"] >= loaded_before
    report = check(
        file_rows_sent((row, True) for row in rows),
        rows_found,
        [],
        sqs.depth(emulator.endpoint, queues.url).total,
        key_function(load_mapping(MAPPING, table_name)),
        min_messages=ROWS,
    )
    assert report.ok, report.summary()


def test_a_parquet_object_loads_exactly_and_a_corrupt_one_is_dead_lettered(
    emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path
) -> None:
    bucket = s3.make_bucket(emulator.endpoint)
    queues = sqs.make_queues(emulator.endpoint)
    env = data_locker_env(emulator, queues, pg_dsn, table_name)
    init_db(env)
    rows = list(synth_rows(ROWS, seed=31, hour=datetime(2024, 5, 1, 6)))
    body = parquet(rows, row_group_rows=25_000)
    key = "data-locker/t=inapps/dt=2024-05-01/h=6/part-00000.snappy.parquet"
    etag = s3.put(emulator.endpoint, bucket, key, body)
    corrupt = parquet(list(synth_rows(1000, seed=32)))
    corrupt = corrupt[:-12] + b"\xff" * 8 + corrupt[-4:]  # a footer length past the start
    corrupt_key = "data-locker/t=inapps/dt=2024-05-01/h=6/part-00001.parquet"
    corrupt_etag = s3.put(emulator.endpoint, bucket, corrupt_key, corrupt)
    bodies = [
        notification(bucket, key, etag=etag),  # no size: read with HeadObject
        notification(bucket, corrupt_key, size=len(corrupt), etag=corrupt_etag),
    ]
    assert sqs.send(emulator.endpoint, queues.url, bodies) == 2

    stats = scenario.drain(env, tmp_path / "drain.log", timeout=240)

    found = scenario.target_rows(pg_dsn, table_name)
    assert sum(found.values()) == ROWS
    assert stats["rowsInserted"] == ROWS
    assert dlq_reasons(emulator, queues) == {"corrupt_object": 1}
    report = check(
        file_rows_sent([*((row, True) for row in rows)]),
        found,
        sorted(set(sqs.dlq_bodies(emulator.endpoint, queues.dlq_url))),
        sqs.depth(emulator.endpoint, queues.url).total,
        key_function(load_mapping(MAPPING, table_name)),
        min_messages=ROWS,
    )
    assert report.ok, report.summary()
