"""A ``redshift-data`` client that runs what it is sent on PostgreSQL: the Data API stand-in
for the sink contract, where statements must really run (moto's stand-in, in
``moto_redshift.py``, checks the request flow and runs nothing).

It answers as the Data API does: ``ExecuteStatement`` / ``BatchExecuteStatement`` return an
id at once; the work is done by the time ``DescribeStatement`` is asked (``FINISHED`` with
``ResultRows``, or ``FAILED`` with the server's error text, a batch naming the sub-statement
that failed); a batch is one transaction; ``GetStatementResult`` pages typed fields.

With an S3 client (``s3``), Redshift's ``COPY <table> (<columns>) FROM 's3://<manifest>'
IAM_ROLE '...' MANIFEST CSV [GZIP] IGNOREHEADER 1 NULL AS '...'`` (the COPY of a Data Locker
object, ``sinks/redshift/object_copy.py``) runs too: the manifest is read from that S3 (the
emulator's), and each object it names, and only those, is loaded with PostgreSQL's ``COPY
FROM STDIN (FORMAT csv, HEADER, NULL ...)`` (the header skipped in each, as IGNOREHEADER
does). Failures read as Redshift's: a manifest that cannot be read ("Problem reading
manifest file - S3ServiceException..."), a ``mandatory`` entry whose object is missing
("Mandatory url is not present in manifest file."); and, as there, a COPY that finds none
of the objects fails whatever ``mandatory`` says.
Other COPY forms (a key prefix without MANIFEST, JSON) are not emulated and fail on
PostgreSQL's parser.
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg

from sluice.sinks.redshift.data_api import to_psycopg_params

_S3_COPY = re.compile(
    r"^COPY (?P<table>\"[^\"]+\") \((?P<columns>[^)]*)\) FROM '(?P<url>s3://(?:[^']|'')+)' "
    r"IAM_ROLE '[^']*' MANIFEST (?P<form>CSV GZIP|CSV) IGNOREHEADER 1 "
    r"NULL AS '(?P<null>[^'\\]*)' ",
)


class S3CopyError(Exception):
    """The object a COPY names could not be read."""


class PostgresDataApi:
    def __init__(self, dsn: str, s3: Callable[[], Awaitable[Any]] | None = None) -> None:
        self._dsn = dsn
        self._s3 = s3
        self.copies = 0  # COPY FROM S3 statements run
        self.copied_urls: list[str] = []  # the objects those COPYs loaded
        self._ids = itertools.count(1)
        self._statements: dict[str, dict[str, Any]] = {}
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        return self._conn

    async def execute_statement(self, **kwargs: Any) -> dict[str, Any]:
        params = {p["name"]: p["value"] for p in kwargs.get("Parameters", [])}
        statement_id = f"s-{next(self._ids)}"
        conn = await self._connection()
        try:
            copied = await self._s3_copy(conn, kwargs["Sql"])
            if copied is not None:
                self._statements[statement_id] = {"Status": "FINISHED", "ResultRows": copied}
                return {"Id": statement_id}
            cursor = await conn.execute(to_psycopg_params(kwargs["Sql"]), params or None)
            records = await cursor.fetchall() if cursor.description else []
            self._statements[statement_id] = {
                "Status": "FINISHED",
                "ResultRows": cursor.rowcount,
                "Records": records,
            }
        except psycopg.Error as exc:
            self._statements[statement_id] = {"Status": "FAILED", "Error": _text(exc)}
        return {"Id": statement_id}

    async def batch_execute_statement(self, **kwargs: Any) -> dict[str, Any]:
        statement_id = f"s-{next(self._ids)}"
        conn = await self._connection()
        subs: list[dict[str, Any]] = []
        try:
            async with conn.transaction():
                for i, sql in enumerate(kwargs["Sqls"], start=1):
                    sub = {"Id": f"{statement_id}:{i}", "Status": "FAILED"}
                    subs.append(sub)
                    try:
                        copied = await self._s3_copy(conn, sql)
                        if copied is None:
                            copied = (await conn.execute(sql)).rowcount
                    except psycopg.Error as exc:
                        sub["Error"] = _text(exc)
                        raise
                    sub |= {"Status": "FINISHED", "ResultRows": copied}
        except psycopg.Error as exc:
            for sub in subs:
                if sub["Status"] == "FINISHED":
                    sub["Status"] = "ABORTED"
            self._statements[statement_id] = {
                "Status": "FAILED",
                "Error": _text(exc),
                "SubStatements": subs,
            }
        else:
            self._statements[statement_id] = {"Status": "FINISHED", "SubStatements": subs}
        return {"Id": statement_id}

    async def _s3_copy(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], sql: str
    ) -> int | None:
        """Rows a COPY FROM an S3 object loaded, or None for any other statement."""
        match = _S3_COPY.match(sql)
        if match is None or self._s3 is None:
            return None
        manifest_url = match["url"].replace("''", "'")
        client = await self._s3()
        try:
            entries = orjson.loads(await _read(client, manifest_url))["entries"]
        except S3CopyError as exc:
            raise psycopg.errors.ExternalRoutineException(
                f"Problem reading manifest file - {exc}"
            ) from exc
        bodies: dict[str, bytes] = {}
        for entry in entries:
            url = str(entry["url"])
            try:
                bodies[url] = await _read(client, url)
            except S3CopyError as exc:
                if entry.get("mandatory", False):
                    raise psycopg.errors.ExternalRoutineException(
                        "Mandatory url is not present in manifest file."
                    ) from exc
        if not bodies:  # whatever "mandatory" says, COPY stops when it finds no file
            raise psycopg.errors.ExternalRoutineException(
                f"COPY found none of the files manifest {manifest_url} names"
            )
        self.copies += 1
        self.copied_urls.extend(bodies)
        null = match["null"].replace("'", "''")
        loaded = 0
        for body in bodies.values():
            data = body
            if match["form"] == "CSV GZIP":
                try:
                    data = gzip.decompress(body)
                except (OSError, EOFError) as exc:
                    raise psycopg.errors.DataException(f"gzip: {exc}") from exc
            async with (
                conn.cursor() as cursor,
                cursor.copy(
                    f"COPY {match['table']} ({match['columns']}) FROM STDIN "
                    f"WITH (FORMAT csv, HEADER true, NULL '{null}')"
                ) as copy,
            ):
                await copy.write(data)
            loaded += cursor.rowcount
        return loaded

    async def describe_statement(self, **kwargs: Any) -> dict[str, Any]:
        described = dict(self._statements[kwargs["Id"]])
        described.pop("Records", None)
        return {"Id": kwargs["Id"], **described}

    async def get_statement_result(self, **kwargs: Any) -> dict[str, Any]:
        records = self._statements[kwargs["Id"]].get("Records", [])
        return {"Records": [[_field(v) for v in record] for record in records]}

    async def cancel_statement(self, **kwargs: Any) -> dict[str, Any]:
        return {"Status": False}

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def _read(client: Any, url: str) -> bytes:
    """The object at ``url`` from the emulator's S3, or S3CopyError as Redshift words it."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return bytes(await body.read())
    except Exception as exc:  # Redshift: "S3ServiceException:The specified key does not exist"
        raise S3CopyError(f"S3ServiceException: {type(exc).__name__} reading {url}") from exc


def _text(exc: psycopg.Error) -> str:
    """The server's message, as the Data API reports it (``ERROR: ...``)."""
    primary = exc.diag.message_primary or str(exc)
    return f"ERROR: {primary}"


def _field(value: object) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}
