"""How long a backlog takes to clear: the one formula `sluice status` and the planner share."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DrainVerdict(enum.Enum):
    DRAINED = "drained"  # nothing waiting
    CLEARS = "clears"  # processing outpaces arrivals: an ETA exists
    NEVER = "never"  # arrivals keep up with or outrun processing
    UNKNOWN = "unknown"  # not enough history to tell


@dataclass(frozen=True)
class DrainEstimate:
    verdict: DrainVerdict
    seconds: float | None
    reason: str

    def text(self) -> str:
        if self.verdict is DrainVerdict.CLEARS and self.seconds is not None:
            return f"{format_duration(self.seconds)} ({self.reason})"
        if self.verdict is DrainVerdict.UNKNOWN:
            return f"measuring ({self.reason})"
        return f"{self.verdict.value}: {self.reason}"


def drain_eta(
    backlog: int, processing_rate: float | None, arrival_rate: float | None
) -> DrainEstimate:
    """ETA = backlog / (processing rate - arrival rate), in seconds; rates in messages/s."""
    if backlog <= 0:
        return DrainEstimate(DrainVerdict.DRAINED, 0.0, "the queue is empty")
    if processing_rate is None:
        return DrainEstimate(DrainVerdict.UNKNOWN, None, "no throughput history yet")
    if arrival_rate is None:
        # One depth reading gives no trend; a rate of another window would give a wrong ETA.
        return DrainEstimate(
            DrainVerdict.UNKNOWN, None, "the queue depth has been read once so far"
        )
    net = processing_rate - arrival_rate
    if processing_rate <= 0:
        return DrainEstimate(DrainVerdict.NEVER, None, "no messages are being processed")
    if net <= 0:
        return DrainEstimate(
            DrainVerdict.NEVER,
            None,
            f"arrivals {arrival_rate:,.1f}/s keep up with processing {processing_rate:,.1f}/s",
        )
    return DrainEstimate(
        DrainVerdict.CLEARS,
        backlog / net,
        f"{backlog:,} / ({processing_rate:,.1f} - {arrival_rate:,.1f}) msg/s",
    )


def format_duration(seconds: float) -> str:
    """3d 4h, 2h 05m, 4m 10s, 12s: the two largest units."""
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
