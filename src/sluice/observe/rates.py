"""Throughput over sliding windows from sampled counters (pure; the caller owns the clock).

Worker processes restart and their counters start again from zero, so per-worker counts go
through ``ResettingCounters``, which turns them into one total that only grows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class ResettingCounters:
    """Sum of per-source counters that may reset to zero (a restarted process)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self.total = 0.0

    def observe(self, source: str, value: float) -> None:
        previous = self._last.get(source)
        # A drop means a new incarnation: everything it reports is new work.
        self.total += value if previous is None or value < previous else value - previous
        self._last[source] = value


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    processed: float  # messages processed so far (a growing total)
    backlog: int | None  # messages in the queue (visible + in flight + delayed), if known
    # When that backlog was read: the depth is read every SLUICE_QUEUE_ATTRIBUTES_INTERVAL
    # (30 s), the counters every 5 s, so most samples repeat an older reading. None: now.
    backlog_at: float | None = None

    @property
    def read_at(self) -> float:
        return self.at if self.backlog_at is None else self.backlog_at


@dataclass(frozen=True)
class Rates:
    processing: float | None  # messages/s
    # messages/s: processing plus the backlog's growth between two depth readings, so that
    # processing - arrival, what a drain ETA divides by, is the backlog's own measured trend
    arrival: float | None
    window: float  # seconds the figures actually span


class RateHistory:
    """Keeps samples for ``horizon`` seconds; answers rates over any window inside it."""

    def __init__(self, horizon: float = 300.0) -> None:
        self.horizon = horizon
        self._samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        # Keep one sample older than the horizon so a full window always has a start.
        while len(self._samples) > 2 and sample.at - self._samples[1].at >= self.horizon:
            self._samples.popleft()

    def rates(self, window: float) -> Rates:
        if len(self._samples) < 2:
            return Rates(None, None, 0.0)
        newest = self._samples[-1]
        start = self._start_for(newest.at - window)
        span = newest.at - start.at
        if span <= 0:
            return Rates(None, None, 0.0)
        processing = (newest.processed - start.processed) / span
        growth = self._backlog_growth(newest.at - window)
        arrival = None if growth is None else max(0.0, processing + growth)
        return Rates(processing, arrival, span)

    def _backlog_growth(self, since: float) -> float | None:
        """Backlog change per second between the latest depth reading and the one at or
        before ``since`` (else the earliest kept), over the readings' own times: dividing
        by the counters' span instead gave no growth at all until a second reading came.
        None until two readings exist."""
        readings: dict[float, int] = {}
        for sample in self._samples:
            if sample.backlog is not None:
                readings.setdefault(sample.read_at, sample.backlog)
        if len(readings) < 2:
            return None
        times = sorted(readings)
        start = times[0]
        for at in times[:-1]:
            if at > since:
                break
            start = at
        last = times[-1]
        return (readings[last] - readings[start]) / (last - start)

    def _start_for(self, since: float) -> Sample:
        """The latest sample at or before ``since``, else the oldest one kept."""
        chosen = self._samples[0]
        for sample in self._samples:
            if sample.at > since:
                break
            chosen = sample
        return chosen
