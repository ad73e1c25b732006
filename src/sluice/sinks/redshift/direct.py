"""Statements over a direct connection to Redshift's PostgreSQL-compatible endpoint (psycopg).

TLS is verified unless the URL says otherwise (``sslmode=verify-full`` by default; config
refuses weaker modes except on a loopback host). The password is the URL's, or temporary
credentials from ``GetClusterCredentials`` for the configured cluster, database and user,
fetched again for every new connection (they last 15 minutes). Up to ``connections``
connections, one transaction each at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql

from sluice.errors import CommitUnknownError, SluiceError, TransientError
from sluice.sinks.pool import Connection, ConnectionSlots, rollback_quietly
from sluice.sinks.redshift.data_api import to_psycopg_params
from sluice.sinks.redshift.errors import (
    CONFLICT_SQLSTATES,
    SerializationConflict,
    classify_message,
)


@dataclass(frozen=True)
class DbCredentials:
    user: str
    password: str


CredentialsProvider = Callable[[], Awaitable[DbCredentials]]


def translate(exc: psycopg.Error, *, commit_sent: bool, secrets: Sequence[str]) -> SluiceError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if exc.sqlstate in CONFLICT_SQLSTATES:
        # Checked first: psycopg files these under OperationalError, yet the server has
        # rolled the transaction back, even when COMMIT is what failed (SSI reports there).
        return SerializationConflict(f"Redshift [{exc.sqlstate}]: {text}")
    if commit_sent and isinstance(exc, psycopg.OperationalError):
        return CommitUnknownError(f"connection lost during COMMIT: {text}")
    if isinstance(exc, psycopg.OperationalError) or (exc.sqlstate or "").startswith("08"):
        return TransientError(f"Redshift connection: {text}")
    return classify_message(text, f"Redshift [{exc.sqlstate or 'no state'}]")


class DirectRunner:
    """Runs transactions and queries over a small pool of psycopg connections."""

    def __init__(
        self,
        dsn: str,
        *,
        connections: int = 1,
        credentials: CredentialsProvider | None = None,
        application_name: str = "sluice",
    ) -> None:
        self._dsn = dsn
        self._given = psycopg.conninfo.conninfo_to_dict(dsn)
        self._credentials = credentials
        self._app = application_name
        self._secrets: list[str] = [str(self._given.get("password") or "")]
        self._pool = ConnectionSlots(connections, self._connect)
        self.requests = 0  # round trips: statements plus BEGIN / COMMIT

    async def _connect(self) -> Connection:
        extra: dict[str, Any] = {}
        if "sslmode" not in self._given:
            extra["sslmode"] = "verify-full"
        if self._credentials is not None:
            creds = await self._credentials()
            self._secrets.append(creds.password)
            extra |= {"user": creds.user, "password": creds.password}
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=10, application_name=self._app, **extra
            )
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return conn

    def _error(self, exc: psycopg.Error, *, commit_sent: bool = False) -> SluiceError:
        return translate(exc, commit_sent=commit_sent, secrets=self._secrets)

    async def run(self, statements: Sequence[str]) -> tuple[int, ...]:
        """Run ``statements`` as one transaction; the row count of each."""
        conn = await self._pool.checkout()
        commit_sent = False
        counts = []
        try:
            self.requests += 1
            await conn.execute("BEGIN")
            for statement in statements:
                self.requests += 1
                cursor = await conn.execute(pgsql.SQL(statement))
                counts.append(cursor.rowcount)
            commit_sent = True
            self.requests += 1
            await conn.execute("COMMIT")
        except psycopg.Error as exc:
            await rollback_quietly(conn)
            raise self._error(exc, commit_sent=commit_sent) from exc
        except BaseException:
            await rollback_quietly(conn)
            raise
        finally:
            self._pool.checkin(conn)
        return tuple(counts)

    async def execute(self, sql: str) -> None:
        await self.query(sql)

    async def query(self, sql: str, params: Sequence[str] = ()) -> list[tuple[object, ...]]:
        conn = await self._pool.checkout()
        try:
            self.requests += 1
            bound = {f"p{i + 1}": value for i, value in enumerate(params)}
            cursor = await conn.execute(pgsql.SQL(to_psycopg_params(sql)), bound)
            return list(await cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            self._pool.checkin(conn)

    async def close(self) -> None:
        await self._pool.close()
