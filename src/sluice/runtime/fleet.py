"""The fleet: the supervisor's worker processes, started, watched, restarted and stopped.

It owns the processes and their bookkeeping (slots, restart backoff, counters) and decides
nothing about how many there should be: the supervisor says, through ``ensure``, and reads
what is running through ``view``, a frozen picture it can hand on without handing the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from sluice.config import Settings
from sluice.config_text import settings_environment
from sluice.local.emulator import free_port
from sluice.policies import ExponentialBackoff

CHILD_HOST = "127.0.0.1"  # children's endpoints are the supervisor's business only
STABLE_AFTER = 60.0  # a child up this long has its restart backoff forgotten
KILL_MARGIN = 5.0  # beyond the children's own grace before they are SIGKILLed


class ChildState(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"  # asked to stop (scale-in or shutdown): its exit is expected


@dataclass
class WorkerProcess:
    slot: int
    worker_id: str
    port: int
    process: asyncio.subprocess.Process
    started_at: float
    state: ChildState = ChildState.RUNNING

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self) -> None:
        """Graceful stop: the worker flushes, settles, releases the rest, then exits."""
        self.state = ChildState.STOPPING
        self._send(signal.SIGTERM)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def _send(self, signum: signal.Signals) -> None:
        if self.process.returncode is None:
            # It may exit between the check and the signal.
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def view(self) -> ChildView:
        return ChildView(
            self.slot, self.worker_id, self.pid, self.port, self.state, self.started_at
        )


@dataclass(frozen=True)
class ChildView:
    """One worker process as it was when the fleet's view was taken."""

    slot: int
    worker_id: str
    pid: int
    port: int
    state: ChildState
    started_at: float

    @property
    def metrics_url(self) -> str:
        return f"http://{CHILD_HOST}:{self.port}/metrics"

    def describe(self, now: float) -> dict[str, object]:
        return {
            "worker": self.worker_id,
            "slot": self.slot,
            "pid": self.pid,
            "port": self.port,
            "state": self.state.value,
            "uptime": round(now - self.started_at, 1),
        }


@dataclass(frozen=True)
class FleetView:
    children: tuple[ChildView, ...]  # by slot; those asked to stop included until they exit
    restarting: frozenset[int]  # slots waiting out their restart backoff
    started: int  # worker processes started, restarts included
    restarts: int

    @property
    def active(self) -> int:
        """Children running or about to be restarted: what a scaling decision counts."""
        running = {c.slot for c in self.children if c.state is ChildState.RUNNING}
        return len(running | self.restarting)

    @property
    def empty(self) -> bool:
        return not self.children and not self.restarting


@dataclass(frozen=True)
class ChildExit:
    slot: int
    code: int
    expected: bool  # it was asked to stop
    finished: bool  # a --drain child that exited 0: it found the queue empty


_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the supervisor dies (Linux).

    A supervisor that is SIGKILLed (or OOM-killed) cannot stop its workers; without this they
    would run on as orphans, unsupervised and invisible to `sluice status`. SIGTERM, not
    SIGKILL: each orphan still settles what it holds and releases the rest.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_environment(
    settings: Settings, base: Mapping[str, str], slot: int, port: int
) -> dict[str, str]:
    """The parent's environment with every effective setting spelled out for one child.

    Settings may have come from flags or a TOML file the child never sees, so each one is
    passed as its variable; the child then runs as one plain worker.
    """
    env = {k: v for k, v in base.items() if k not in {"SLUICE_CONFIG", "SLUICE_AUTOSCALE"}}
    env.update(settings_environment(settings))
    env.pop("SLUICE_AUTOSCALE", None)
    env.update(
        {
            "WORKER_ID": f"{settings.worker_id}-{slot}",
            "PORT": str(port),
            "SLUICE_HTTP_HOST": CHILD_HOST,
            "SLUICE_PROCESSES": "1",
        }
    )
    return env


async def start_worker_process(
    settings: Settings, base_env: Mapping[str, str], slot: int, port: int, *, drain: bool
) -> WorkerProcess:
    env = child_environment(settings, base_env, slot, port)
    argv = [sys.executable, "-m", "sluice", "run", *(["--drain"] if drain else [])]
    # The supervisor delivers stop signals itself; a new session keeps a terminal's Ctrl-C
    # from reaching the children before the supervisor has decided what to do.
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, start_new_session=True, preexec_fn=_stop_with_parent
    )
    child = WorkerProcess(slot, env["WORKER_ID"], port, process, time.monotonic())
    structlog.get_logger("sluice.supervisor").info(
        "worker_started", worker=child.worker_id, pid=child.pid, port=port
    )
    return child


class Fleet:
    """Keeps the worker processes it is told to: restarts those that die, stops them all."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        drain: bool,
        on_exit: Callable[[ChildExit], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.drain = drain
        self.on_exit = on_exit
        self.clock = clock
        self.children: dict[int, WorkerProcess] = {}
        self.restarting: dict[int, asyncio.Task[None]] = {}
        self.failures: dict[int, int] = {}  # slot -> consecutive crashes
        self.backoff = ExponentialBackoff(base=1.0, cap=settings.restart_max_backoff, floor=0.2)
        self.started = 0
        self.restarts = 0
        self._lock = asyncio.Lock()
        self._watchers: set[asyncio.Task[None]] = set()
        self.log = structlog.get_logger("sluice.supervisor").bind(worker=settings.worker_id)

    def view(self) -> FleetView:
        children = tuple(c.view() for c in sorted(self.children.values(), key=lambda c: c.slot))
        return FleetView(children, frozenset(self.restarting), self.started, self.restarts)

    async def ensure(self, wanted: Callable[[], int | None]) -> None:
        """Run as many children as ``wanted()`` says; None: start nobody and stop nobody.

        Asked only once the lock is held: a restart holds it across a process start, and a
        count read before that (a child finishing its drain meanwhile) would be stale.
        """
        async with self._lock:
            active = self._active_slots()
            target = wanted()
            if target is None:
                return
            for _ in range(target - len(active)):
                await self._start(self._free_slot())
            if self.drain:
                return  # a --drain run ends by draining, not by scale-in
            for slot in sorted(active, reverse=True)[: max(0, len(active) - target)]:
                if slot in self.restarting:
                    self.restarting.pop(slot).cancel()
                else:
                    self.log.info("worker_stopping", worker=self.children[slot].worker_id)
                    self.children[slot].terminate()

    def _active_slots(self) -> set[int]:
        running = {s for s, c in self.children.items() if c.state is ChildState.RUNNING}
        return running | set(self.restarting)

    def _free_slot(self) -> int:
        taken = set(self.children) | set(self.restarting)
        return next(slot for slot in range(1, len(taken) + 2) if slot not in taken)

    async def _start(self, slot: int) -> None:
        child = await start_worker_process(
            self.settings, self.env, slot, free_port(), drain=self.drain
        )
        self.children[slot] = child
        self.started += 1
        # Held here: the event loop keeps only weak references to tasks.
        watcher = asyncio.create_task(self._watch(child), name=f"watch-{child.worker_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, child: WorkerProcess) -> None:
        code = await child.process.wait()
        lived = self.clock() - child.started_at
        self.children.pop(child.slot, None)
        expected = child.state is ChildState.STOPPING
        finished = self.drain and code == 0
        report = self.log.info if expected or finished else self.log.error
        report(
            "worker_exited",
            worker=child.worker_id,
            pid=child.pid,
            code=code,
            expected=expected,
            lived=round(lived, 1),
        )
        if not expected and not finished:
            self._schedule_restart(child.slot, lived)
        self.on_exit(ChildExit(child.slot, code, expected, finished))

    def _schedule_restart(self, slot: int, lived: float) -> None:
        failures = 0 if lived >= STABLE_AFTER else self.failures.get(slot, 0) + 1
        self.failures[slot] = failures
        delay = self.backoff.delay(failures - 1) if failures else 0.0
        self.log.warning("worker_restart_scheduled", slot=slot, delay=round(delay, 2))
        self.restarting[slot] = asyncio.create_task(self._restart_after(slot, delay))

    async def _restart_after(self, slot: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            self.restarting.pop(slot, None)
            if slot in self.children:
                return
            await self._start(slot)
            self.restarts += 1

    async def stop_all(self) -> None:
        """SIGTERM every child, SIGKILL those still there after the grace, await the exits."""
        for task in self.restarting.values():
            task.cancel()
        self.restarting.clear()
        children = list(self.children.values())
        if not children:
            return
        self.log.info("stopping_workers", count=len(children))
        for child in children:
            child.terminate()
        waits = [asyncio.ensure_future(child.process.wait()) for child in children]
        _, pending = await asyncio.wait(waits, timeout=self.settings.shutdown_grace + KILL_MARGIN)
        for child in children:
            if child.process.returncode is None:
                self.log.error("worker_killed_after_grace", worker=child.worker_id)
                child.kill()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        # Let the watchers log the exits they are owed before the loop closes.
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=5.0)
