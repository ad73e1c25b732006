"""Statements through the Redshift Data API (aiobotocore's ``redshift-data`` client).

The Data API is asynchronous: ``BatchExecuteStatement`` submits statements that run as one
transaction in one session and returns an id; ``DescribeStatement`` is polled until the
statement is FINISHED, FAILED or ABORTED. Polls back off from ``poll_first`` to
``poll_cap`` seconds; past ``timeout`` the statement is cancelled and the load reported as
of unknown outcome (it may still commit: the merge makes the retry harmless).

Provisioned clusters are addressed by cluster id + database + database user (temporary
credentials from GetClusterCredentials, done by the service) or a Secrets Manager secret;
Serverless by workgroup name + database.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from sluice.aws_errors import AwsService, classify
from sluice.errors import CommitUnknownError, PermanentError, SluiceError, TransientError
from sluice.sinks.redshift.errors import classify_message

ClientSource = Callable[[], Awaitable[Any]]  # the client, opened on first use
_PARAM = re.compile(r":(p\d+)\b")


@dataclass(frozen=True)
class DataApiTarget:
    """Where statements go. Exactly one of the three ways is complete (checked in config)."""

    database: str
    cluster_identifier: str | None = None
    db_user: str | None = None
    secret_arn: str | None = None
    workgroup: str | None = None

    def request(self) -> dict[str, Any]:
        params: dict[str, Any] = {"Database": self.database}
        if self.workgroup:
            params["WorkgroupName"] = self.workgroup
        if self.cluster_identifier:
            params["ClusterIdentifier"] = self.cluster_identifier
        if self.secret_arn:
            params["SecretArn"] = self.secret_arn
        elif self.db_user:
            params["DbUser"] = self.db_user
        return params


@dataclass(frozen=True)
class PollPolicy:
    """How DescribeStatement is polled: capped exponential steps under a deadline."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    timeout: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * self.factor**attempt))


@dataclass(frozen=True)
class StatementOutcome:
    """A finished statement: its id, and the rows each sub-statement touched (-1: none)."""

    statement_id: str
    row_counts: tuple[int, ...]


class DataApiRunner:
    """Runs transactions and queries through one ``redshift-data`` client."""

    def __init__(
        self,
        client: ClientSource,
        target: DataApiTarget,
        poll: PollPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._target = target
        self._poll = poll or PollPolicy()
        self._clock = clock
        self._sleep = sleep
        self.requests = 0  # Data API calls made (ExecuteStatement, Describe..., ...)

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]:
        """Run ``statements`` as one transaction; the row count of each."""
        response = await self._call(
            "BatchExecuteStatement",
            "batch_execute_statement",
            commit=True,
            Sqls=list(statements),
            **self._target.request(),
        )
        outcome = await self._wait(str(response["Id"]), commit=True)
        return outcome.row_counts

    async def execute(self, sql: str) -> None:
        response = await self._call(
            "ExecuteStatement", "execute_statement", Sql=sql, **self._target.request()
        )
        await self._wait(str(response["Id"]), commit=False)

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]:
        """A SELECT with ``:p1``, ``:p2``... bound as Data API parameters (never literals)."""
        bound = [{"name": f"p{i + 1}", "value": value} for i, value in enumerate(params)]
        extra: dict[str, Any] = {"Parameters": bound} if bound else {}
        response = await self._call(
            "ExecuteStatement",
            "execute_statement",
            Sql=sql,
            **extra,
            **self._target.request(),
        )
        statement_id = str(response["Id"])
        await self._wait(statement_id, commit=False)
        rows: list[tuple[object, ...]] = []
        token: str | None = None
        while True:
            more: dict[str, Any] = {"NextToken": token} if token else {}
            page = await self._call(
                "GetStatementResult", "get_statement_result", Id=statement_id, **more
            )
            rows.extend(tuple(_field(f) for f in record) for record in page.get("Records", []))
            token = page.get("NextToken")
            if not token:
                return rows

    async def _wait(self, statement_id: str, *, commit: bool) -> StatementOutcome:
        deadline = self._clock() + self._poll.timeout
        attempt = 0
        while True:
            described = await self._call("DescribeStatement", "describe_statement", Id=statement_id)
            status = str(described.get("Status", ""))
            if status == "FINISHED":
                return StatementOutcome(statement_id, _row_counts(described))
            if status in ("FAILED", "ABORTED"):
                raise _failed(described, status)
            if self._clock() >= deadline:
                await self._cancel(statement_id)
                text = (
                    f"Redshift statement {statement_id} still {status or 'unknown'} after "
                    f"{self._poll.timeout:g} s; cancelled"
                )
                raise CommitUnknownError(text) if commit else TransientError(text)
            await self._sleep(min(self._poll.delay(attempt), max(0.0, deadline - self._clock())))
            attempt += 1

    async def _cancel(self, statement_id: str) -> None:
        try:
            self.requests += 1
            await (await self._client()).cancel_statement(Id=statement_id)
        except (ClientError, BotoCoreError):
            pass  # best effort: it may have finished meanwhile

    async def _call(
        self,
        action: str,
        method: str,
        *,
        commit: bool = False,
        **kwargs: Any,
    ) -> Any:
        client = await self._client()
        self.requests += 1
        try:
            return await getattr(client, method)(**kwargs)
        except ClientError as exc:
            raise translate_client_error(exc, action) from exc
        except ParamValidationError as exc:  # the request itself is wrong: a bug, not a blip
            raise PermanentError(f"Redshift Data API {action}: {exc}") from exc
        except (TimeoutError, BotoCoreError, OSError) as exc:
            text = f"Redshift Data API {action}: {type(exc).__name__}: {exc}"
            # The submission may have reached the service before the connection broke.
            raise (CommitUnknownError(text) if commit else TransientError(text)) from exc

    async def close(self) -> None:
        return None  # the client's lifetime belongs to whoever made it


def translate_client_error(exc: ClientError, action: str) -> SluiceError:
    # ValidationException, AccessDeniedException, ResourceNotFoundException (no such cluster,
    # workgroup or secret): the deployment is wrong, not the moment; the rest by the table.
    return classify(AwsService.REDSHIFT_DATA, action, exc)


def _failed(described: dict[str, Any], status: str) -> SluiceError:
    """A FAILED or ABORTED statement; a batch names the sub-statement that failed."""
    text = str(described.get("Error") or "")
    for sub in described.get("SubStatements") or []:
        if sub.get("Status") == "FAILED" and sub.get("Error"):
            text = str(sub["Error"])
            break
    if status == "ABORTED":
        return TransientError(f"Redshift statement aborted: {text or 'cancelled'}")
    return classify_message(text or "failed without an error text", "Redshift statement failed")


def _row_counts(described: dict[str, Any]) -> tuple[int, ...]:
    subs = described.get("SubStatements") or []
    if subs:
        return tuple(int(s.get("ResultRows", -1)) for s in subs)
    return (int(described.get("ResultRows", -1)),)


def _field(value: dict[str, Any]) -> object:
    if value.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue"):
        if key in value:
            return value[key]
    return None


def to_psycopg_params(sql: str) -> str:
    """``:p1`` placeholders (Data API) as ``%(p1)s`` (psycopg), for the direct connection."""
    return _PARAM.sub(r"%(\1)s", sql)
