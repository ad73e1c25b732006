"""The supervisor's endpoints, and the client `sluice scale` and `sluice status` use.

PORT (every interface, for Prometheus and probes): /metrics (all children's series plus the
supervisor's own), /healthz, /readyz, /status (read-only JSON). The control socket (a Unix
socket in a directory only this user can enter): GET /status and POST /scale. Changing the
worker count is never reachable from the network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from sluice.errors import ConfigError, TransientError
from sluice.observe import unix_socket
from sluice.observe.aggregate import SupervisorFigures, render
from sluice.observe.http import HttpService, health_app
from sluice.plan.capacity import drain_eta
from sluice.scaling import MAX_PROCESSES

if TYPE_CHECKING:
    from sluice.runtime.supervisor import Supervisor

WINDOWS = {"1m": 60.0, "5m": 300.0}


def status_document(sup: Supervisor) -> dict[str, Any]:
    """Everything `sluice status` shows, from the supervisor's latest figures."""
    now = sup.clock()
    rates = {name: sup.history.rates(seconds) for name, seconds in WINDOWS.items()}
    five = rates["5m"]
    queue = sup.queue
    backlog = queue.total if queue is not None else None
    eta = drain_eta(backlog, five.processing, five.arrival) if backlog is not None else None
    decision = sup.last_decision
    return {
        "supervisor": {"pid": os.getpid(), "mode": sup.mode, "pinned": sup.pinned},
        "workers": {
            "desired": sup.target_count(),
            "running": len(sup.children),
            "restarts": sup.restarts,
            "processes": [
                c.describe(now) for c in sorted(sup.children.values(), key=lambda c: c.slot)
            ],
        },
        "queue": None
        if queue is None
        else {
            "visible": queue.visible,
            "in_flight": queue.in_flight,
            "delayed": queue.delayed,
            "dlq": sup.dead_letters.total if sup.dead_letters is not None else None,
            "age": None if sup.queue_seen_at is None else round(now - sup.queue_seen_at, 1),
        },
        "oldest_age": sup.fleet.oldest_age,
        "held": sup.fleet.held,
        "dead_letters": {
            "send_failures": sup.fleet.dead_letter_send_failures,
            "degraded": list(sup.fleet.degraded),
        },
        "processed": sup.processed.total,
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
async def supervisor_endpoints(sup: Supervisor) -> AsyncIterator[None]:
    socket_path = sup.settings.control_socket_path
    if await _answers(socket_path):
        raise ConfigError(
            f"SLUICE_CONTROL_SOCKET={socket_path}: another supervisor is running there; "
            "give this one its own socket path"
        )

    async def render_all() -> bytes:
        scrapes = await sup.scrape()
        figures = SupervisorFigures(
            desired=sup.target_count(),
            running=len(sup.children),
            restarts=sup.restarts,
            scale_events=dict(sup.scale_events),
        )
        return render(scrapes, figures)

    async def readiness() -> list[str]:
        problems = await sup.children_ready()
        if sup.queue is None:
            problems.append("SQS: GetQueueAttributes has not answered lately")
        return problems

    async def status(_: web.Request) -> web.Response:
        return web.json_response(status_document(sup))

    async def scale(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            workers = body.get("workers")
            count = None if workers == "auto" else int(workers)
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'expected {"workers": N or "auto"}'}, status=400)
        if count is not None and not 0 <= count <= MAX_PROCESSES:
            return web.json_response({"error": f"workers must be 0..{MAX_PROCESSES}"}, status=400)
        sup.scale_to(count)
        return web.json_response(status_document(sup))

    public = HttpService(health_app(render_all, readiness, {"/status": status}))
    control_app = web.Application()
    control_app.router.add_get("/status", status)
    control_app.router.add_post("/scale", scale)
    control = HttpService(control_app)
    if sup.settings.port:
        await public.start_tcp(sup.settings.http_host, sup.settings.port)
    await control.start_unix(socket_path)
    sup.log.info("control_socket", path=str(socket_path))
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
