"""HTTP endpoints: a worker's or the supervisor's /metrics, /healthz, /readyz (and more).

``HttpService`` serves an aiohttp app on TCP (PORT, reachable by probes and Prometheus) or
on a Unix socket (the supervisor's control channel, reachable only by its own user).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import structlog
from aiohttp import web

from sluice.errors import ConfigError
from sluice.observe import unix_socket
from sluice.observe.metrics import CONTENT_TYPE

Readiness = Callable[[], Awaitable[list[str]]]  # the reasons it is not ready; empty = ready
Render = Callable[[], Awaitable[bytes]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpService:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None
        self._unix: tuple[Path, unix_socket.FileId] | None = None  # the socket this bound
        self.log = structlog.get_logger("sluice.http")

    async def start_tcp(self, host: str, port: int) -> bool:
        """Serve; False (logged) when the port is taken, e.g. by another worker on the host."""
        runner = await self._setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                # Not a busy port but an address this host cannot listen on: a setting to fix.
                await self.stop()
                raise ConfigError(
                    f"SLUICE_HTTP_HOST={host} is invalid: cannot listen there ({exc.strerror})"
                ) from None
            self.log.warning("http_port_unavailable", port=port, error=str(exc))
            await self.stop()
            return False
        self.log.info("http_listening", host=host, port=port)
        return True

    async def start_unix(self, path: Path) -> None:
        """Serve on a socket in a directory no other user can write to (see unix_socket)."""
        directory = unix_socket.prepare(path)
        runner = await self._setup()
        old_mask = os.umask(0o177)  # the socket is created 0600
        try:
            await web.UnixSite(runner, str(path)).start()
        finally:
            os.umask(old_mask)
        try:
            self._unix = (path, unix_socket.confirm(path, directory))
        except ConfigError:
            await self.stop()
            raise

    async def _setup(self) -> web.AppRunner:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        return self._runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._unix is not None:
            unix_socket.remove(*self._unix)
            self._unix = None


def health_app(
    render: Render,
    readiness: Readiness,
    extra: Mapping[str, Handler] | None = None,
    *,
    ready_word: str = "ready",
    ready_note: str | None = None,
) -> web.Application:
    """/metrics (Prometheus text), /healthz (the event loop runs), /readyz (can do work).

    ``ready_word`` is /readyz's status word when there are no problems (``disabled`` for a
    worker paused on purpose: it is as it should be, so it passes), with ``ready_note``.
    """

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=await render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        note = {"note": ready_note} if ready_note else {}
        return web.json_response({"status": ready_word, **note})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for path, handler in (extra or {}).items():
        app.router.add_get(path, handler)
    return app
