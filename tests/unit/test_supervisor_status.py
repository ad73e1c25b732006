"""The supervisor's status as a frozen snapshot: the endpoints read it through callables and
never hold the supervisor, and the fleet's view counts its children as the policy does."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

from sluice.config import load_settings
from sluice.observe.aggregate import FleetFigures
from sluice.observe.rates import Rates
from sluice.runtime import control
from sluice.runtime.control import (
    WINDOWS,
    DepthReading,
    SupervisorControls,
    SupervisorStatus,
    request_control,
    status_document,
    supervisor_endpoints,
)
from sluice.runtime.fleet import ChildState, ChildView, FleetView
from sluice.runtime.supervisor import Supervisor
from sluice.sources.base import QueueDepth


def child(slot: int, state: ChildState = ChildState.RUNNING) -> ChildView:
    return ChildView(slot, f"w-{slot}", 1000 + slot, 9000 + slot, state, started_at=10.0)


def snapshot(**changes: Any) -> SupervisorStatus:
    fields: dict[str, Any] = {
        "at": 70.0,
        "pid": 42,
        "mode": "autoscale 1:4",
        "pinned": None,
        "desired": 2,
        "fleet": FleetView((child(2), child(1, ChildState.STOPPING)), frozenset({3}), 4, 1),
        "depth": DepthReading(QueueDepth(600, 30, 0), QueueDepth(5, 0, 0), at=40.0),
        "figures": FleetFigures({"w-1": 10.0}, 12.5, 7, 2, ("w-2",)),
        "processed": 1234.0,
        "rates": {name: Rates(10.0, 4.0, seconds) for name, seconds in WINDOWS.items()},
        "last_decision": None,
    }
    fields.update(changes)
    return SupervisorStatus(**fields)


def test_the_status_document_is_built_from_the_snapshot_alone() -> None:
    doc = status_document(snapshot())
    assert doc["supervisor"] == {"pid": 42, "mode": "autoscale 1:4", "pinned": None}
    workers = doc["workers"]
    assert (workers["desired"], workers["running"], workers["restarts"]) == (2, 2, 1)
    assert [p["slot"] for p in workers["processes"]] == [2, 1]  # as the view orders them
    assert workers["processes"][1]["state"] == "stopping"
    assert workers["processes"][0]["uptime"] == 60.0
    assert doc["queue"] == {"visible": 600, "in_flight": 30, "delayed": 0, "dlq": 5, "age": 30.0}
    assert (doc["oldest_age"], doc["held"], doc["processed"]) == (12.5, 7, 1234.0)
    assert doc["dead_letters"] == {"send_failures": 2, "degraded": ["w-2"]}
    assert doc["throughput"]["5m"] == {"processing": 10.0, "arrival": 4.0, "span": 300.0}
    assert doc["eta"]["verdict"] == "clears" and doc["eta"]["seconds"] == 105.0
    assert doc["last_decision"] is None


def test_without_a_depth_reading_there_is_no_queue_and_no_eta() -> None:
    doc = status_document(snapshot(depth=None))
    assert doc["queue"] is None and doc["eta"] is None


def test_the_fleet_view_counts_running_and_restarting_but_not_stopping() -> None:
    view = FleetView((child(1), child(2, ChildState.STOPPING)), frozenset({3}), 3, 0)
    assert view.active == 2 and not view.empty
    assert FleetView((), frozenset(), 5, 2).empty


def test_a_snapshot_does_not_follow_the_supervisor_after_it_was_taken() -> None:
    settings = load_settings(
        {"WORKER_ID": "sup", "SLUICE_SINK": "postgres", "SLUICE_DATABASE_URL": "postgresql://h/db"}
    )
    supervisor = Supervisor(settings, drain=False, env={}, clock=lambda: 5.0)
    before = supervisor.snapshot()
    supervisor.scale_to(3)
    assert (before.pinned, before.desired) == (None, 1)
    after = status_document(supervisor.snapshot())
    assert after["supervisor"]["pinned"] == 3 and after["workers"]["desired"] == 3
    assert after["supervisor"]["mode"] == "fixed 3" and after["queue"] is None


def test_the_control_socket_serves_status_and_scale_through_callables(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "WORKER_ID": "sup",
            "SLUICE_SINK": "postgres",
            "SLUICE_DATABASE_URL": "postgresql://h/db",
            "SLUICE_CONTROL_SOCKET": str(tmp_path / "ctl" / "supervisor.sock"),
            "PORT": "0",
        }
    )
    asked: list[int | None] = []
    current = {"pinned": None}

    def scale(count: int | None) -> None:
        asked.append(count)
        current["pinned"] = count

    async def nothing() -> list[str]:
        return []

    async def no_metrics() -> bytes:
        return b""

    controls = SupervisorControls(
        lambda: snapshot(pinned=current["pinned"]), scale, nothing, no_metrics
    )

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        path = settings.control_socket_path
        async with supervisor_endpoints(settings, controls):
            seen = await request_control(path, "GET", "/status")
            pinned = await request_control(path, "POST", "/scale", {"workers": 3})
            unpinned = await request_control(path, "POST", "/scale", {"workers": "auto"})
        return seen, pinned, unpinned

    seen, pinned, unpinned = asyncio.run(go())
    assert seen == status_document(snapshot())
    assert pinned["supervisor"]["pinned"] == 3 and unpinned["supervisor"]["pinned"] is None
    assert asked == [3, None]


def test_the_control_module_does_not_import_the_supervisor() -> None:
    tree = ast.parse(Path(control.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not any(name.startswith("sluice.runtime.supervisor") for name in imported)
