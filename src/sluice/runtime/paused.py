"""A worker with its consumer switched off (``ENABLE_SQS_CONSUMER=false``).

It serves /healthz (alive: a liveness probe must not restart a worker paused on purpose),
/metrics and /status on PORT, /readyz as 200 "disabled", and /status on the control socket for
`sluice status`, until SIGTERM. /readyz passes: the worker is as it was asked to be, nothing
routes traffic to a queue consumer, and a failing readiness gate would stall the very rollout
that pauses it (Kubernetes waits for new pods to be ready before it stops old ones).

It opens neither SQS nor the warehouse: a consumer is paused mostly because one of them is
in trouble (an incident, a migration, expired credentials), and a paused worker that needed
them would fail its probes exactly then. Queue depth is SQS's own CloudWatch metric meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from sluice.config import Settings
from sluice.errors import ConfigError, TransientError
from sluice.observe.http import HttpService, health_app
from sluice.runtime.control import request_control
from sluice.runtime.worker import install_signal_handlers

DISABLED = "consumer disabled (ENABLE_SQS_CONSUMER=false)"


def paused_status(settings: Settings) -> dict[str, Any]:
    """The /status document of a paused worker, in the shape `sluice status` reads."""
    return {
        "supervisor": None,
        "consumer": "disabled",
        "worker": settings.worker_id,
        "pid": os.getpid(),
        "queue": None,
        "note": f"{DISABLED}: this worker consumes nothing until it is restarted enabled",
    }


def paused_metrics(worker_id: str) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    enabled = Gauge(
        "sluice_consumer_enabled",
        "1 while this worker consumes; 0 when ENABLE_SQS_CONSUMER=false",
        ["worker"],
        registry=registry,
    )
    enabled.labels(worker=worker_id).set(0)
    return generate_latest(registry)


async def run_paused(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the endpoints until ``stop`` (SIGTERM/SIGINT when not given)."""
    log = structlog.get_logger("sluice.worker").bind(worker=settings.worker_id)
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop, log)
    body = paused_metrics(settings.worker_id)

    async def render() -> bytes:
        return body

    async def readiness() -> list[str]:
        return []

    async def status(_: web.Request) -> web.Response:
        return web.json_response(paused_status(settings))

    public = HttpService(
        health_app(
            render, readiness, {"/status": status}, ready_word="disabled", ready_note=DISABLED
        )
    )
    if settings.port:
        await public.start_tcp(settings.http_host, settings.port)
    log.info("consumer_disabled", env="ENABLE_SQS_CONSUMER", port=settings.port or None)
    try:
        async with _control_socket(settings, status, log):
            await stop.wait()
    finally:
        await public.stop()
    log.info("stopped", reason="signalled", consumer="disabled")


@contextlib.asynccontextmanager
async def _control_socket(
    settings: Settings,
    status: Any,
    log: structlog.typing.FilteringBoundLogger,
) -> AsyncIterator[None]:
    """/status on the control socket, so `sluice status` beside it says "disabled".

    Best effort: a supervisor already there, or a path refused, is logged and skipped; the
    probes on PORT are what a paused worker is for, and must not wait on this.
    """
    path = settings.control_socket_path
    app = web.Application()
    app.router.add_get("/status", status)
    control = HttpService(app)
    try:
        await request_control(path, "GET", "/status")
    except TransientError:
        try:
            await control.start_unix(path)
        except (ConfigError, OSError) as exc:
            log.warning("control_socket_unavailable", path=str(path), error=str(exc))
    else:
        log.warning("control_socket_unavailable", path=str(path), error="another process")
    try:
        yield
    finally:
        await control.stop()
