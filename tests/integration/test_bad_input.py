"""A corpus of bad input through a real worker: each gets a clear outcome, nothing else suffers.

Every item is sent among 1,000 valid events; after the drain each item must be where its
expectation says (a row holding the value verbatim, the DLQ with a reason, or gone because it
carried nothing), and the total-queue checker must pass for the whole run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.tools.checker import Sent, check, key_function
from sluice.tools.synth import synthetic_stream
from tests.support import sqs
from tests.support.fault_proxy import dlq_entries
from tests.support.worker import init_db, start_worker, worker_env

GOOD = {
    "appsflyer_id": "1700000000000-1",
    "event_name": "af_purchase",
    "event_time": "2026-11-27 10:00:00.123",
}
INJECTION = "x'); DROP TABLE appsflyer_events; --"
SQS_BODY_LIMIT = 1024 * 1024


def event(**changes: object) -> str:
    return orjson.dumps(GOOD | changes).decode()


def sns(message: str) -> str:
    return orjson.dumps(
        {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:0:t",
            "Message": message,
        }
    ).decode()


@dataclass(frozen=True)
class Case:
    name: str
    body: str
    outcome: str  # "loaded", "ignored", or a dead-letter reason


def corpus() -> list[Case]:
    huge_unknown = event(appsflyer_id="big-1", note="x" * 1_000_000)
    assert len(huge_unknown.encode()) < SQS_BODY_LIMIT
    return [
        Case("truncated JSON", '{"appsflyer_id": "a", "event_na', "invalid_json"),
        Case(
            "NaN",
            '{"appsflyer_id":"n","event_name":"e","event_time":"2026-01-01","event_revenue":NaN}',
            "invalid_json",
        ),
        Case(
            "Infinity",
            '{"appsflyer_id":"i","event_name":"e","event_time":"2026-01-01",'
            '"event_revenue":Infinity}',
            "invalid_json",
        ),
        Case(
            "NUL in a value", event(appsflyer_id="nul-1", campaign="a\u0000b"), "invalid_character"
        ),
        # SQS cannot carry invalid UTF-8 at all; inside JSON the same mistake is a lone
        # surrogate escape, which no UTF-8 encoder can write.
        Case(
            "lone surrogate escape",
            '{"appsflyer_id":"s","event_name":"\\ud800","event_time":"2026-01-01"}',
            "invalid_json",
        ),
        Case("blank body", "   ", "empty_body"),
        Case("JSON string", '"just a string"', "not_an_object"),
        Case("1 MiB body, unknown field", huge_unknown, "loaded"),
        Case(
            "text over its column in UTF-8 bytes (50 x 3-byte euro = 150 > 128)",
            event(appsflyer_id="€" * 50),
            "value_too_long",
        ),
        Case(
            "text within its column (40 x 3 bytes = 120 <= 128)",
            event(appsflyer_id="€" * 40),
            "loaded",
        ),
        Case("revenue as a list", event(appsflyer_id="w1", event_revenue=[1]), "wrong_type"),
        Case("boolean as 'maybe'", event(appsflyer_id="w2", is_retargeting="maybe"), "wrong_type"),
        Case("event_time not a time", event(appsflyer_id="w3", event_time="soon"), "wrong_type"),
        Case(
            "decimal beyond DECIMAL(20,6)",
            event(appsflyer_id="o1", event_revenue="1e20"),
            "out_of_range",
        ),
        Case(
            "missing event_name",
            orjson.dumps({"appsflyer_id": "m1", "event_time": "2026-01-01"}).decode(),
            "missing_required",
        ),
        Case(
            "unknown fields",
            event(appsflyer_id="u1", brand_new={"deep": [1, {"x": None}]}),
            "loaded",
        ),
        Case(
            "SQL injection in a value", event(appsflyer_id=INJECTION, campaign=INJECTION), "loaded"
        ),
        Case("SNS envelope", sns(event(appsflyer_id="sns-1")), "loaded"),
        Case("SNS with a non-JSON message", sns("hello"), "invalid_json"),
        Case("SNS inside SNS", sns(sns(event(appsflyer_id="sns-2"))), "missing_required"),
        Case(  # the worker reads the objects it names; this one is in no bucket
            "S3 notification of a missing object",
            orjson.dumps(
                {
                    "Records": [
                        {
                            "eventSource": "aws:s3",
                            "eventName": "ObjectCreated:Put",
                            "s3": {"bucket": {"name": "b"}, "object": {"key": "k.gz"}},
                        }
                    ]
                }
            ).decode(),
            "object_missing",
        ),
        Case(
            "S3 test event",
            orjson.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}).decode(),
            "ignored",
        ),
    ]


def test_bad_input_corpus(emulator: Emulator, pg_dsn: str, table_name: str, tmp_path: Path) -> None:
    cases = corpus()
    valid = [m.body for m in synthetic_stream(1000, malformed_ratio=0, duplicate_ratio=0)]
    queues = sqs.make_queues(emulator.endpoint)
    bodies = [c.body for c in cases] + valid
    sqs.send(emulator.endpoint, queues.url, bodies)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table=table_name,
        database_url=pg_dsn,
        extra={"AWS_ENDPOINT_URL_S3": emulator.endpoint},  # the emulator serves S3 too
    )
    init_db(env)
    worker = start_worker(env, tmp_path / "worker.log", "--drain")
    assert worker.wait(timeout=120) == 0, worker.log[-3000:]

    reasons = dict(dlq_entries(emulator.endpoint, queues.dlq_url))
    with psycopg.connect(pg_dsn) as conn:
        ids = {str(r[0]) for r in conn.execute(f'SELECT appsflyer_id FROM "{table_name}"')}
        campaigns = {
            str(r[0])
            for r in conn.execute(f'SELECT campaign FROM "{table_name}" WHERE campaign IS NOT NULL')
        }
        keyed = dict(
            conn.execute(f'SELECT dedupe_key, count(*) FROM "{table_name}" GROUP BY 1').fetchall()
        )
        big = conn.execute(f"""SELECT length(raw_event->>'note') FROM "{table_name}"
                               WHERE appsflyer_id = 'big-1'""").fetchone()
    for case in cases:
        if case.outcome == "loaded":
            assert case.body not in reasons, f"{case.name}: dead-lettered, expected a row"
        elif case.outcome == "ignored":
            assert case.body not in reasons, f"{case.name}: dead-lettered, expected no-op"
        else:
            assert reasons.get(case.body) == case.outcome, f"{case.name}: {reasons.get(case.body)}"
    assert INJECTION in ids and INJECTION in campaigns  # stored verbatim, nothing executed
    assert {"sns-1", "€" * 40, "u1", "big-1"} <= ids
    assert big == (1_000_000,)

    loadable = {c.body for c in cases if c.outcome == "loaded"}
    sent = [
        Sent(b, b in loadable or b in set(valid))
        for b in bodies
        if b not in {c.body for c in cases if c.outcome == "ignored"}
    ]
    report = check(
        sent,
        {str(k): int(n) for k, n in keyed.items()},
        reasons.keys(),
        sqs.depth(emulator.endpoint, queues.url).total,
        key_function(load_mapping(None, table_name)),
    )
    assert report.ok, report.summary()


def test_injection_in_a_mapping_column_name_is_refused_at_start_up(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[[columns]]\nname = "a; DROP TABLE x"\ntype = "text"\n')
    env = worker_env(
        endpoint="http://127.0.0.1:9",
        queue_url="http://127.0.0.1:9/0/q",
        dlq_url=None,
        table="t",
        sink="duckdb",
        duckdb_path=str(tmp_path / "d.db"),
        extra={"SLUICE_MAPPING_FILE": str(mapping)},
    )
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "a; DROP TABLE x" in done.stderr and "identifier" in done.stderr
