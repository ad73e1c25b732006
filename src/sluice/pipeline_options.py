"""What a pipeline is told: concurrency, bounds by count and bytes, flush, timing, and how
receivers back off. Pure data, built by the worker from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from sluice.batching import FlushPolicy
from sluice.concurrency import AdaptiveConcurrency, ConcurrencyBounds
from sluice.model import SQS_MAX_MESSAGE_BYTES
from sluice.policies import ExponentialBackoff

DRAIN_POLL_WAIT = 1  # seconds a long poll waits in drain mode, so an empty queue ends fast
# Short polls (SQS_WAIT_TIME_SECONDS=0) that find nothing back off towards what one long poll
# costs (one request per 20 s); in drain mode no further than 1 s, so the end is seen soon.
SHORT_POLL_BACKOFF = ExponentialBackoff(base=0.05, cap=20.0)
SHORT_POLL_DRAIN_BACKOFF = ExponentialBackoff(base=0.05, cap=1.0)
# Deletes when nothing says otherwise: adaptive from 8, between 2 and 64 in flight.
DEFAULT_DELETE_BOUNDS = ConcurrencyBounds(low=2, high=64, start=8)


@dataclass(frozen=True)
class PipelineOptions:
    receive_concurrency: int  # receives in flight at the start (all the time, unless adaptive)
    max_messages: int
    wait_time_seconds: int
    visibility_timeout: int
    max_held: int
    flush: FlushPolicy
    load_concurrency: int
    shutdown_grace: float
    heartbeat_interval: float
    stats_interval: float
    worker_id: str
    backoff: ExponentialBackoff
    drain: bool = False
    # Bytes of message bodies held at most, counting what polls in flight may still bring
    # (each up to max_messages x max_message_bytes): memory stays bounded by bytes, not only
    # by count, whatever the messages weigh.
    max_held_bytes: int = 256 * 1024 * 1024
    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES
    # How receives and deletes in flight adapt; None: receive_concurrency fixed, deletes
    # adaptive within DEFAULT_DELETE_BOUNDS.
    concurrency: AdaptiveConcurrency | None = None

    @property
    def concurrency_policy(self) -> AdaptiveConcurrency:
        if self.concurrency is not None:
            return self.concurrency
        return AdaptiveConcurrency(
            ConcurrencyBounds.fixed(self.receive_concurrency), DEFAULT_DELETE_BOUNDS
        )

    @property
    def poll_reserve_bytes(self) -> int:
        return self.max_messages * self.max_message_bytes

    @property
    def empty_receive_backoff(self) -> ExponentialBackoff | None:
        """How receivers back off after empty receives: only short polls need to."""
        if self.wait_time_seconds > 0:
            return None
        return SHORT_POLL_DRAIN_BACKOFF if self.drain else SHORT_POLL_BACKOFF
