"""Wire a RedshiftSink from the settings: AWS clients, the runner, the S3 stager."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sluice.aws_errors import NO_ANSWER, AwsService, classify
from sluice.errors import PermanentError, TransientError
from sluice.mapping import TableMapping
from sluice.sinks.base import FaultHook
from sluice.sinks.redshift.data_api import DataApiRunner, DataApiTarget, PollPolicy
from sluice.sinks.redshift.direct import CredentialsProvider, DbCredentials, DirectRunner
from sluice.sinks.redshift.settings import (
    BuildSettings,
    RedshiftConnection,
    RedshiftMergeLock,
)
from sluice.sinks.redshift.sink import RedshiftSink, StatementRunner
from sluice.sinks.redshift.sql import MAX_STATEMENT_BYTES, MAX_TRANSACTION_BYTES, MergeLock
from sluice.sinks.redshift.staging import S3Stager, StagingLocation
from sluice.sinks.sql import REDSHIFT, Dialect

# Redshift accepts SQL text up to 16 MB on a connection; the Data API, 100 KB a statement.
DIRECT_MAX_STATEMENT_BYTES = 15_000_000
DIRECT_MAX_TRANSACTION_BYTES = 1 << 40  # no request body to keep small
CREDENTIALS_SECONDS = 900


class AwsClients:
    """aiobotocore clients, each opened on first use and all closed together."""

    def __init__(
        self, region: str, credentials: dict[str, str] | None, pool: int, read_timeout: float
    ) -> None:
        self._region = region
        self._credentials = credentials or {}
        self._pool = pool
        self._read_timeout = read_timeout
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def get(self, service: str, endpoint_url: str | None) -> Any:
        if service in self._clients:
            return self._clients[service]
        async with self._lock:
            if service not in self._clients:
                self._clients[service] = await self._open(service, endpoint_url)
        return self._clients[service]

    async def _open(self, service: str, endpoint_url: str | None) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            max_pool_connections=self._pool,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=self._read_timeout,
        )
        try:
            return await self._stack.enter_async_context(
                get_session().create_client(
                    service,
                    region_name=self._region,
                    endpoint_url=endpoint_url,
                    config=config,
                    **self._credentials,
                )
            )
        except ClientError as exc:
            raise PermanentError(f"AWS {service} client: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"AWS {service} client: {exc}") from exc

    async def close(self) -> None:
        await self._stack.aclose()
        self._clients.clear()


class _ClosingRunner:
    """A runner that also closes the AWS clients it was built on."""

    def __init__(self, runner: StatementRunner, clients: AwsClients) -> None:
        self._runner = runner
        self._clients = clients

    @property
    def requests(self) -> int:
        return self._runner.requests

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]:
        return await self._runner.run(statements)

    async def execute(self, sql: str) -> None:
        await self._runner.execute(sql)

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]:
        return await self._runner.query(sql, params)

    async def close(self) -> None:
        try:
            await self._runner.close()
        finally:
            await self._clients.close()


def build_redshift_sink(
    settings: BuildSettings,
    mapping: TableMapping,
    faults: FaultHook | None = None,
    credentials: dict[str, str] | None = None,
    *,
    dialect: Dialect = REDSHIFT,
) -> RedshiftSink:
    """The sink for the settings. ``dialect`` is REDSHIFT except where a benchmark runs the
    same statements on PostgreSQL (bench/redshift_child.py)."""
    redshift = settings.redshift
    pool = 2 * settings.effective_load_concurrency + 4
    clients = AwsClients(settings.aws_region, credentials, pool, read_timeout=60)
    runner: StatementRunner
    max_bytes, max_transaction = DIRECT_MAX_STATEMENT_BYTES, DIRECT_MAX_TRANSACTION_BYTES
    if redshift.connection is RedshiftConnection.DIRECT:
        assert settings.database_url is not None  # checked in config
        runner = DirectRunner(
            settings.database_url,
            connections=settings.effective_load_concurrency,
            credentials=_cluster_credentials(settings, clients) if redshift.iam_auth else None,
            application_name=f"sluice-{settings.worker_id}"[:63],
        )
    else:
        assert redshift.database is not None  # checked in config
        target = DataApiTarget(
            redshift.database,
            cluster_identifier=redshift.cluster_identifier,
            db_user=redshift.db_user,
            secret_arn=redshift.secret_arn,
            workgroup=redshift.workgroup,
        )

        async def data_client() -> Any:
            return await clients.get("redshift-data", redshift.data_endpoint_url)

        runner = DataApiRunner(data_client, target, PollPolicy(timeout=redshift.statement_timeout))
        max_bytes, max_transaction = MAX_STATEMENT_BYTES, MAX_TRANSACTION_BYTES
    stager = None
    if redshift.copy:
        assert redshift.s3_staging_uri is not None  # checked in config

        async def s3_client() -> Any:
            return await clients.get("s3", redshift.s3_endpoint_url)

        location = StagingLocation.parse(redshift.s3_staging_uri)
        stager = S3Stager(s3_client, location, settings.worker_id)
    return RedshiftSink(
        _ClosingRunner(runner, clients),
        mapping,
        stager=stager,
        iam_role=redshift.iam_role,
        sort_key=redshift.sort_key,
        faults=faults,
        max_statement_bytes=max_bytes,
        max_transaction_bytes=max_transaction,
        dialect=dialect,
        merge_lock=_MERGE_LOCKS[redshift.merge_lock],
    )


# AUTO is left to the sink, which reads the database's isolation level when it opens.
_MERGE_LOCKS: dict[RedshiftMergeLock, MergeLock | None] = {
    RedshiftMergeLock.AUTO: None,
    RedshiftMergeLock.NONE: MergeLock.NONE,
    RedshiftMergeLock.TRANSACTION: MergeLock.TRANSACTION,
}


def _cluster_credentials(settings: BuildSettings, clients: AwsClients) -> CredentialsProvider:
    """Temporary database credentials for REDSHIFT_DB_USER, fetched per connection."""
    redshift = settings.redshift

    async def fetch() -> DbCredentials:
        client = await clients.get("redshift", redshift.endpoint_url)
        try:
            answer = await client.get_cluster_credentials(
                DbUser=redshift.db_user,
                DbName=redshift.database or _url_database(settings),
                ClusterIdentifier=redshift.cluster_identifier,
                DurationSeconds=CREDENTIALS_SECONDS,
                AutoCreate=False,
            )
        except (ClientError, *NO_ANSWER) as exc:
            raise classify(AwsService.REDSHIFT, "GetClusterCredentials", exc) from exc
        return DbCredentials(str(answer["DbUser"]), str(answer["DbPassword"]))

    return fetch


def _url_database(settings: BuildSettings) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(settings.database_url or "").get("dbname") or "dev")
