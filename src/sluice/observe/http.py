"""The worker's HTTP endpoints on PORT: /metrics, /healthz (alive), /readyz (can work)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from sluice.observe.metrics import CONTENT_TYPE, WorkerMetrics

# Probes and Prometheus scrape from outside the container, so listen on every interface.
ANY_HOST = "0.0.0.0"  # noqa: S104
Readiness = Callable[[], Awaitable[list[str]]]  # the reasons it is not ready; empty = ready


class HealthServer:
    def __init__(
        self, metrics: WorkerMetrics, readiness: Readiness, port: int, host: str = ANY_HOST
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None
        self.log = structlog.get_logger("sluice.http")

    async def start(self) -> bool:
        """Serve; False (logged) when the port is taken, e.g. by another worker on the host."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            self.log.warning("http_port_unavailable", port=self.port, error=str(exc))
            await self.stop()
            return False
        self.log.info("http_listening", port=self.port)
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        problems = await self.readiness()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})
