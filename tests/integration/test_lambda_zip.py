"""`make lambda-zip`'s script builds a zip with only what the handler needs, and the handler
runs from it, unpacked as Lambda unpacks it into /var/task, in a clean interpreter (``-I -S``:
no site-packages, no user site, no PYTHON* variables) with only the unpacked zip on sys.path:
one invocation against PostgreSQL and the emulator's DLQ, and the AWS clients of the services
whose models the zip keeps."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg

from sluice.local.emulator import Emulator
from sluice.mapping import load_mapping
from sluice.sinks.postgres import PostgresSink
from tests.support import sqs
from tests.support.lambda_events import appsflyer, event, record

REPO = Path(__file__).resolve().parents[2]
NEVER_IN_THE_ZIP = (
    "duckdb",
    "pyarrow",
    "matplotlib",
    "numpy",
    "click",
    "rich",
    "pytest",
    "hypothesis",
    "moto",
    "cfnlint",
    "sluice/cli/",
    "sluice/tools/",
)

RUN_FROM_THE_ZIP = r"""
import json, sys
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if "site-packages" not in p and p]
from sluice.aws_lambda import handler

class Context:
    function_name = "sluice-zip"
    aws_request_id = "r-1"
    def get_remaining_time_in_millis(self):
        return 60_000

answer = handler(json.loads(sys.argv[2]), Context())
from aiobotocore.session import get_session
import asyncio

async def clients():
    for service in ("sqs", "redshift-data", "redshift", "s3"):
        async with get_session().create_client(
            service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ):
            pass

asyncio.run(clients())
outside = sorted(
    name for name, module in sys.modules.items()
    if getattr(module, "__file__", None) and "site-packages" in module.__file__
)
print(json.dumps({"answer": answer, "outside": outside,
                  "loaded": sorted({n.split(".")[0] for n in sys.modules})}))
"""


def test_the_zip_holds_only_the_handlers_needs_and_runs_alone(
    tmp_path: Path, emulator: Emulator, pg_dsn: str, table_name: str
) -> None:
    out = tmp_path / "sluice-lambda.zip"
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_lambda_zip.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "MB zipped" in built.stdout and "CPython" in built.stdout
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert "sluice/aws_lambda/handler.py" in names
        assert "psycopg_binary/__init__.py" in names
        for never in NEVER_IN_THE_ZIP:
            assert not [n for n in names if n.startswith(never)], never
        # bytecode made for this interpreter, so a cold start does not compile every module
        assert importlib.util.cache_from_source("sluice/aws_lambda/handler.py") in names
        archive.extractall(tmp_path / "task")
    assert out.stat().st_size < 50_000_000  # Lambda's limit for a zip uploaded directly

    queues = sqs.make_queues(emulator.endpoint)
    mapping = load_mapping(None, table_name)

    async def create() -> None:
        sink = PostgresSink(pg_dsn, mapping)
        await sink.create_table()
        await sink.close()

    asyncio.run(create())
    records = [record(appsflyer(i), message_id=f"z-{i}") for i in range(3)]
    records.append(record("{", message_id="z-poison"))
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL_SQS": queues.endpoint,
        "SLUICE_DLQ_URL": queues.dlq_url,
        "SLUICE_SINK": "postgres",
        "SLUICE_DATABASE_URL": pg_dsn,
        "REDSHIFT_TABLE_NAME": table_name,
        "SLUICE_LOG_FORMAT": "json",
    }
    ran = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",  # /var/task is read-only: nothing written beside the code
            "-c",
            RUN_FROM_THE_ZIP,
            str(tmp_path / "task"),
            json.dumps(event(records)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr + ran.stdout
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["answer"] == {"batchItemFailures": []}
    assert result["outside"] == []  # nothing came from outside the zip
    assert not {"click", "rich", "duckdb", "pyarrow"} & set(result["loaded"])
    assert any('"_aws"' in line for line in ran.stdout.splitlines())  # the EMF line
    with psycopg.connect(pg_dsn) as conn:
        (count,) = conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone() or (0,)
    assert count == 3
    assert sqs.dlq_reasons(queues.endpoint, queues.dlq_url) == {"invalid_json": 1}
