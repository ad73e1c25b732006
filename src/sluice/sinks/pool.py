"""A few psycopg connections shared by concurrent loads: opened on first use, replaced when
broken. Both the PostgreSQL sink and the Redshift direct runner hold one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg

Connection = psycopg.AsyncConnection[tuple[object, ...]]


class ConnectionSlots:
    """``size`` slots; a slot holds a live connection or None (connect on next checkout)."""

    def __init__(self, size: int, connect: Callable[[], Awaitable[Connection]]) -> None:
        self._connect = connect
        self._idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)
        self._open: list[Connection] = []

    async def checkout(self) -> Connection:
        """Wait for a free slot; connect it if it is empty or its connection closed."""
        conn = await self._idle.get()
        if conn is None or conn.closed:
            try:
                conn = await self._connect()
            except BaseException:
                self._idle.put_nowait(None)  # the slot stays usable for the next try
                raise
            self._open.append(conn)
        return conn

    def checkin(self, conn: Connection) -> None:
        if conn.closed or conn.broken:
            if conn in self._open:
                self._open.remove(conn)
            self._idle.put_nowait(None)
        else:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._open:
            await conn.close()
        self._open.clear()


async def rollback_quietly(conn: Connection) -> None:
    """End a failed transaction without raising: a connection that cannot even roll back is
    closed, so its slot reconnects on the next checkout."""
    if conn.closed or conn.broken:
        return
    try:
        await conn.execute("ROLLBACK")
    except psycopg.Error:
        await conn.close()
