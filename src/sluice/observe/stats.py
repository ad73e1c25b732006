"""Counters a worker keeps, and the periodic stats line existing dashboards parse."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice.errors import FailureReason
from sluice.model import CircuitState, LoadResult

# How long a failed dead-letter send keeps a worker "degraded" unless a send works since.
DEAD_LETTER_TROUBLE_WINDOW = 300.0


@dataclass
class WorkerCounters:
    """Monotonic counts of what happened to messages. Owned by one pipeline."""

    received: int = 0
    inserted: int = 0
    duplicates_in_batch: int = 0
    duplicates_in_target: int = 0
    ignored: int = 0
    dead_lettered: Counter[FailureReason] = field(default_factory=Counter)
    left_to_redrive: Counter[FailureReason] = field(default_factory=Counter)
    deleted: int = 0
    delete_failures: int = 0
    released: int = 0
    visibility_extended: int = 0
    visibility_failures: int = 0
    batches: int = 0
    load_failures: int = 0
    receive_errors: int = 0
    empty_receives: int = 0
    receives_with_messages: int = 0
    # Messages a DLQ send failed for (each attempt), and when sends last failed / worked
    # (time.monotonic): readiness reports the worker degraded while the DLQ refuses.
    dead_letter_send_failures: int = 0
    dead_letter_failed_at: float | None = None
    dead_letter_sent_at: float | None = None
    dead_letter_last_error: str = ""

    def count_load(self, result: LoadResult) -> None:
        """One committed load of a batch: rows new to the target and rows already there."""
        self.inserted += result.inserted
        self.duplicates_in_target += result.already_present
        self.batches += 1

    def dead_letter_trouble(self, now: float, window: float) -> str | None:
        """Why dead-lettering is failing, if it failed within ``window`` s and has not
        worked since; else None."""
        failed = self.dead_letter_failed_at
        if failed is None or now - failed > window:
            return None
        if self.dead_letter_sent_at is not None and self.dead_letter_sent_at > failed:
            return None
        return (
            f"degraded: dead-letter sends failing ({self.dead_letter_send_failures} failed, "
            f"the last {now - failed:.0f} s ago: {self.dead_letter_last_error})"
        )

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_batch + self.duplicates_in_target

    @property
    def processed(self) -> int:
        """Messages settled into the warehouse: loaded, or absorbed as a duplicate."""
        return self.inserted + self.duplicates

    @property
    def failed(self) -> int:
        """Messages refused for good, whether Sluice dead-lettered them or left them to redrive."""
        return sum(self.dead_lettered.values()) + sum(self.left_to_redrive.values())


@dataclass(frozen=True)
class PipelineView:
    """What the pipeline shows of itself at a scrape."""

    counters: WorkerCounters
    held: int
    oldest_sent_ms: int | None
    circuit: CircuitState
    held_bytes: int = 0


@dataclass
class StatsLine:
    """The per-worker line logged every interval.

    The keys ``workerId, messagesProcessed, messagesFailed, uptimeSeconds,
    throughputPerSecond, throughputPerHour, throughputPerDay`` and their types are those of
    the consumer Sluice replaces (per second as a string with two decimals), so dashboards
    that parse them keep working. Rates are averages since start, as there.
    """

    worker_id: str
    clock: Callable[[], float]
    started_at: float
    _last: tuple[float, int] | None = None

    def render(self, counters: WorkerCounters, held: int) -> dict[str, object]:
        now = self.clock()
        uptime = max(now - self.started_at, 1e-9)
        processed = counters.processed
        per_second = processed / uptime
        last_time, last_processed = self._last or (self.started_at, 0)
        interval = max(now - last_time, 1e-9)
        self._last = (now, processed)
        return {
            "workerId": self.worker_id,
            "messagesProcessed": processed,
            "messagesFailed": counters.failed,
            "uptimeSeconds": int(uptime),
            "throughputPerSecond": f"{per_second:.2f}",
            "throughputPerHour": int(per_second * 3600),
            "throughputPerDay": int(per_second * 86400),
            "intervalPerSecond": round((processed - last_processed) / interval, 2),
            "messagesReceived": counters.received,
            "rowsInserted": counters.inserted,
            "duplicatesAbsorbed": counters.duplicates,
            "deadLettered": {r.value: n for r, n in counters.dead_lettered.items()},
            "messagesHeld": held,
            "rssMB": resident_megabytes(),
        }


def resident_megabytes() -> float | None:
    """Current resident set size, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
