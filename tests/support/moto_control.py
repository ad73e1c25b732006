"""Drive tests/support/moto_redshift.py from a test: set rules, read what was sent."""

from __future__ import annotations

from typing import Any

import boto3
import orjson

from sluice.local.emulator import EMULATOR_CREDENTIALS
from sluice.mapping import LOADED_AT, TableMapping

# information_schema.columns data_type as Redshift reports each column type
REPORTED = {
    "text": "character varying",
    "json": "super",
    "timestamp": "timestamp without time zone",
    "decimal": "numeric",
    "boolean": "boolean",
    "bigint": "bigint",
    "double": "double precision",
}


def control(moto: str, **state: Any) -> list[list[str]]:
    """Set the emulator's rules, or read its history (``history=True``)."""
    client = boto3.client(
        "redshift-data", endpoint_url=moto, region_name="us-east-1", **EMULATOR_CREDENTIALS
    )
    command = "history" if state.pop("history", False) else orjson.dumps(state).decode()
    statement_id = client.execute_statement(
        Sql="--sluice-test " + command, Database="x", ClusterIdentifier="c"
    )["Id"]
    client.describe_statement(Id=statement_id)
    records = client.get_statement_result(Id=statement_id)["Records"]
    return [[field["stringValue"] for field in record] for record in records]


def history(moto: str) -> list[str]:
    return [sql for sql, _ in control(moto, history=True)]


def column_records(mapping: TableMapping) -> list[list[dict[str, Any]]]:
    """What information_schema.columns answers for a table made by `sluice init-db`."""

    def record(name: str, kind: str, nullable: bool) -> list[dict[str, Any]]:
        return [{"stringValue": name}, {"stringValue": kind}, {"booleanValue": nullable}]

    rows = [record(c.name, REPORTED[c.type.value], c.nullable) for c in mapping.load_columns]
    return [*rows, record(LOADED_AT, REPORTED["timestamp"], False)]
