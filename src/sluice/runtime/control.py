"""The supervisor's endpoints, and the client `sluice scale` and `sluice status` use.

PORT (every interface, for Prometheus and probes): /metrics (all children's series plus the
supervisor's own), /healthz, /readyz, /status (read-only JSON). The control socket (a Unix
socket in a directory only this user can enter): GET /status and POST /scale. Changing the
worker count is never reachable from the network.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from sluice.config import Settings
from sluice.errors import ConfigError, TransientError
from sluice.observe import unix_socket
from sluice.observe.aggregate import FleetFigures
from sluice.observe.http import HttpService, Readiness, Render, health_app
from sluice.observe.rates import Rates
from sluice.plan.capacity import drain_eta
from sluice.runtime.fleet import FleetView
from sluice.scaling import MAX_PROCESSES, ScalingDecision
from sluice.sources.base import QueueDepth

WINDOWS = {"1m": 60.0, "5m": 300.0}


@dataclass(frozen=True)
class DepthReading:
    """The queue's depth (and its dead-letter queue's) as last read, and when."""

    queue: QueueDepth
    dead_letters: QueueDepth | None
    at: float  # the supervisor's clock


@dataclass(frozen=True)
class SupervisorStatus:
    """The supervisor's figures at one moment: all the endpoints read, never the supervisor."""

    at: float  # the supervisor's clock when taken
    pid: int
    mode: str
    pinned: int | None
    desired: int
    fleet: FleetView
    depth: DepthReading | None  # None: GetQueueAttributes did not answer lately
    figures: FleetFigures
    processed: float
    rates: Mapping[str, Rates]  # per name in WINDOWS
    last_decision: ScalingDecision | None


@dataclass(frozen=True)
class SupervisorControls:
    """What the endpoints may do with a supervisor: read it, scale it, ask it, render it."""

    status: Callable[[], SupervisorStatus]
    scale: Callable[[int | None], None]  # a count pins it; None hands back to the policy
    readiness: Readiness
    metrics: Render


def status_document(status: SupervisorStatus) -> dict[str, Any]:
    """Everything `sluice status` shows, from the supervisor's latest figures."""
    now = status.at
    rates = status.rates
    five = rates["5m"]
    depth = status.depth
    queue = depth.queue if depth is not None else None
    backlog = queue.total if queue is not None else None
    eta = drain_eta(backlog, five.processing, five.arrival) if backlog is not None else None
    decision = status.last_decision
    figures = status.figures
    return {
        "supervisor": {"pid": status.pid, "mode": status.mode, "pinned": status.pinned},
        "workers": {
            "desired": status.desired,
            "running": len(status.fleet.children),
            "restarts": status.fleet.restarts,
            "processes": [c.describe(now) for c in status.fleet.children],
        },
        "queue": None
        if depth is None
        else {
            "visible": depth.queue.visible,
            "in_flight": depth.queue.in_flight,
            "delayed": depth.queue.delayed,
            "dlq": depth.dead_letters.total if depth.dead_letters is not None else None,
            "age": round(now - depth.at, 1),
        },
        "oldest_age": figures.oldest_age,
        "held": figures.held,
        "dead_letters": {
            "send_failures": figures.dead_letter_send_failures,
            "degraded": list(figures.degraded),
        },
        "processed": status.processed,
        "throughput": {
            name: {"processing": r.processing, "arrival": r.arrival, "span": round(r.window, 1)}
            for name, r in rates.items()
        },
        "eta": None
        if eta is None
        else {"verdict": eta.verdict.value, "seconds": eta.seconds, "text": eta.text()},
        "last_decision": None if decision is None else decision.describe(),
    }


@contextlib.asynccontextmanager
async def supervisor_endpoints(
    settings: Settings, controls: SupervisorControls
) -> AsyncIterator[None]:
    socket_path = settings.control_socket_path
    if await _answers(socket_path):
        raise ConfigError(
            f"SLUICE_CONTROL_SOCKET={socket_path}: another supervisor is running there; "
            "give this one its own socket path"
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response(status_document(controls.status()))

    async def scale(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            workers = body.get("workers")
            count = None if workers == "auto" else int(workers)
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'expected {"workers": N or "auto"}'}, status=400)
        if count is not None and not 0 <= count <= MAX_PROCESSES:
            return web.json_response({"error": f"workers must be 0..{MAX_PROCESSES}"}, status=400)
        controls.scale(count)
        return web.json_response(status_document(controls.status()))

    public = HttpService(health_app(controls.metrics, controls.readiness, {"/status": status}))
    control_app = web.Application()
    control_app.router.add_get("/status", status)
    control_app.router.add_post("/scale", scale)
    control = HttpService(control_app)
    if settings.port:
        await public.start_tcp(settings.http_host, settings.port)
    await control.start_unix(socket_path)
    log = structlog.get_logger("sluice.supervisor").bind(worker=settings.worker_id)
    log.info("control_socket", path=str(socket_path))
    try:
        yield
    finally:
        await public.stop()
        await control.stop()  # removes the socket it bound, and nothing else


async def _answers(path: Path) -> bool:
    try:
        await request_control(path, "GET", "/status")
    except TransientError:
        return False
    return True


async def request_control(
    path: Path, method: str, route: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One request to a supervisor's control socket; TransientError if none answers."""
    unix_socket.check_before_connect(path)
    connector = aiohttp.UnixConnector(path=str(path))
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.request(method, f"http://supervisor{route}", json=payload) as answer,
        ):
            document: dict[str, Any] = await answer.json()
            if answer.status != 200:
                raise ConfigError(str(document.get("error", answer.status)))
            return document
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"no supervisor answers at {path}: {type(exc).__name__}") from exc


async def fetch_status(url: str) -> dict[str, Any]:
    """A supervisor's /status over HTTP (another host, or a container's PORT)."""
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url.rstrip("/") + "/status") as answer,
        ):
            answer.raise_for_status()
            document: dict[str, Any] = await answer.json()
            return document
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"no supervisor answers at {url}: {type(exc).__name__}") from exc
