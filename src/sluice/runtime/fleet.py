"""Worker processes as the supervisor sees them: start, signal, and wait for each one."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from sluice.config import Settings, settings_environment

CHILD_HOST = "127.0.0.1"  # children's endpoints are the supervisor's business only


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
    exited: asyncio.Future[int] = field(default_factory=asyncio.Future)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://{CHILD_HOST}:{self.port}/metrics"

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

    def describe(self, now: float) -> dict[str, object]:
        return {
            "worker": self.worker_id,
            "slot": self.slot,
            "pid": self.pid,
            "port": self.port,
            "state": self.state.value,
            "uptime": round(now - self.started_at, 1),
        }


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
