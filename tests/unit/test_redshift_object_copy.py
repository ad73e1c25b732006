"""Golden tests: the COPY of a Data Locker CSV object from S3 and what qualifies for it.

The statements run on PostgreSQL in tests/integration/test_data_locker_copy.py (the keys
they compute equal Python's there); here their Redshift text is pinned."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.convert import ColumnType
from sluice.mapping import Column, TableMapping, load_mapping
from sluice.sinks.redshift.object_copy import (
    CopyForm,
    CsvObject,
    canonical_json_sql,
    copy_problem,
    header_copy_problem,
    object_copy_plan,
)
from sluice.sinks.redshift.sql import MergeLock
from sluice.sinks.sql import REDSHIFT

GOLDEN = Path(__file__).parent / "golden"
ROLE = "arn:aws:iam::123456789012:role/sluice-copy"
MANIFEST = "s3://staging/sluice/w-1/2024/05/01/0b5e/manifest.json"
SMALL = TableMapping(
    "analytics.events",
    (
        Column("event_time", ColumnType.TIMESTAMP, ("Event Time",), nullable=False),
        Column("note", ColumnType.TEXT, ("Note",), max_length=32),
        Column("flag", ColumnType.BOOLEAN, ("Flag",)),
    ),
)
SOURCE = CsvObject(
    "s3://bucket/t=inapps/dt=2024-05-01/h=1/it's.csv.gz",
    ("Note", "Event Time", "Flag", "Extra"),
    CopyForm.CSV_GZIP,
    "m-1#0:copy",
    datetime(2024, 5, 1, 12, 0, 0),
)


def test_the_small_plan_is_exactly_these_statements() -> None:
    plan = object_copy_plan(REDSHIFT, SMALL, SOURCE, MANIFEST, ROLE)
    kinds = [s.split(" ")[0] for s in plan.transaction.statements]
    assert kinds == ["CREATE", "COPY", "CREATE", "INSERT", "INSERT", "DROP", "DROP"]
    assert plan.rows_index == 3 and plan.transaction.merge_index == 4
    assert plan.transaction.statements[1] == (
        'COPY "sluice_object" ("c1", "c2", "c3", "c4") FROM '
        "'s3://staging/sluice/w-1/2024/05/01/0b5e/manifest.json' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/sluice-copy' MANIFEST CSV GZIP IGNOREHEADER 1 "
        "NULL AS 'sluice:null:7d1f' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF"
    )
    insert = plan.transaction.statements[3]
    assert insert.startswith(
        'INSERT INTO "sluice_staging" ("event_time", "note", "flag", "dedupe_key", '
        '"message_id", "sent_at", "raw_event") SELECT CAST(NULLIF(sluice_row."c2", \'\') AS '
        'TIMESTAMP), sluice_row."c1", CASE WHEN sluice_row."c3" = \'\' THEN NULL ELSE '
        "LOWER(sluice_row.\"c3\") IN ('true', 't', 'yes', 'y', '1') END, SHA2("
    )
    assert "'m-1#0:copy', CAST('2024-05-01 12:00:00' AS TIMESTAMP), JSON_PARSE(" in insert
    assert insert.endswith(
        'OCTET_LENGTH(sluice_row."c1") <= 32 AND (sluice_row."c3" = \'\' OR '
        "LOWER(sluice_row.\"c3\") IN ('true', 't', 'yes', 'y', '1', 'false', 'f', 'no', 'n', "
        "'0')) THEN 1 ELSE 0 END = 1"
    )
    locked = object_copy_plan(REDSHIFT, SMALL, SOURCE, MANIFEST, ROLE, lock=MergeLock.TRANSACTION)
    assert locked.transaction.statements[0] == 'LOCK "analytics"."events"'
    assert (locked.rows_index, locked.transaction.merge_index) == (4, 5)


def test_the_data_locker_plan_is_the_golden_file() -> None:
    from sluice.tools.data_locker import HEADER

    mapping = load_mapping("appsflyer_data_locker", "appsflyer_events").with_text_limit(65535)
    source = CsvObject(
        "s3://bucket/t=inapps/dt=2024-05-01/h=1/part-00000.csv.gz",
        HEADER,
        CopyForm.CSV_GZIP,
        "m-1#0:copy",
        None,
    )
    plan = object_copy_plan(REDSHIFT, mapping, source, MANIFEST, ROLE)
    text = ";\n\n".join(plan.transaction.statements) + ";\n"
    expected = (GOLDEN / "redshift_data_locker_copy.sql").read_text()
    assert text == expected
    assert max(len(s.encode()) for s in plan.transaction.statements) < 100_000  # Data API


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), min_size=1))
def test_the_canonical_json_is_orjsons_with_sorted_keys(row: dict[str, str]) -> None:
    """Apply the escapes the SQL applies, in the same order, to the same pieces: the text
    equals orjson's for every row without the control characters that leave the plain form."""
    header = tuple(row)
    sql = canonical_json_sql(REDSHIFT, header)
    assert sql.count("REPLACE(") == 5 * len(header)
    text = "{"
    for name in sorted(header):
        value = row[name]
        for plain, escaped in (
            ("\\", "\\\\"),
            ('"', '\\"'),
            ("\n", "\\n"),
            ("\r", "\\r"),
            ("\t", "\\t"),
        ):
            value = value.replace(plain, escaped)
        text += ("," if text != "{" else "") + orjson.dumps(name).decode() + ':"' + value + '"'
    text += "}"
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in text):
        return  # not plain: the INSERT divides by zero and the object streams
    assert text.encode() == orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    assert hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        (load_mapping("appsflyer_data_locker", "t"), None),
        (TableMapping("t", (Column("x", ColumnType.DOUBLE, ("X",)),)), "double"),
        (TableMapping("t", (Column("x", ColumnType.TEXT, ("a", "b")),)), "not one CSV column"),
        (
            TableMapping("t", (Column("x", ColumnType.TEXT, ("X",)),), (("X",),)),
            "dedupe key is made of paths",
        ),
    ],
)
def test_which_mappings_qualify(mapping: TableMapping, problem: str | None) -> None:
    found = copy_problem(mapping)
    assert found is None if problem is None else problem in (found or "")


def test_a_header_naming_a_column_twice_does_not_qualify() -> None:
    assert header_copy_problem(("A", "B")) is None
    assert header_copy_problem(("A", "B", "A")) == "the header names a column twice"


REDSHIFT_ENV = {
    "WORKER_ID": "w-test",
    "SLUICE_SINK": "redshift",
    "REDSHIFT_CLUSTER_IDENTIFIER": "events-cluster",
    "REDSHIFT_DATABASE": "analytics",
    "REDSHIFT_DB_USER": "sluice",
    "SLUICE_MAPPING_FILE": "appsflyer_data_locker",
}
STAGING_URI = "s3://staging/sluice"


@pytest.mark.parametrize(
    ("env", "copies"),
    [
        ({"SLUICE_S3_STAGING_URI": STAGING_URI, "SLUICE_REDSHIFT_IAM_ROLE": ROLE}, True),
        # The role alone: no staging for the manifest, so no object COPY (it would take the
        # object's key as a prefix).
        ({"SLUICE_REDSHIFT_IAM_ROLE": ROLE}, False),
        (
            {
                "SLUICE_S3_STAGING_URI": STAGING_URI,
                "SLUICE_REDSHIFT_IAM_ROLE": ROLE,
                "SLUICE_REDSHIFT_LOAD_PATH": "insert",
            },
            False,
        ),
        ({}, False),
    ],
)
def test_objects_are_copied_only_with_s3_staging_and_the_role(
    env: dict[str, str], copies: bool
) -> None:
    from sluice.config import load_settings
    from sluice.objects.build import build_object_loader

    settings = load_settings(REDSHIFT_ENV | env)
    mapping = load_mapping("appsflyer_data_locker", "appsflyer_events")
    loader = build_object_loader(settings, mapping, None)
    assert (loader.copy_problem is None) is copies
