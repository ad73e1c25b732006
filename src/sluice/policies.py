"""Small named policies: how long to back off, and when the warehouse counts as down."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sluice.model import CircuitState


@dataclass(frozen=True)
class ExponentialBackoff:
    """Full-jitter exponential backoff: delay(n) is uniform in [0, min(cap, base * 2**n)].

    Full jitter spreads the retries of many workers hit by the same outage, so they do not
    return in lockstep; the floor keeps even an unlucky draw from becoming a hot loop.
    """

    base: float = 0.1
    cap: float = 30.0
    floor: float = 0.05

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** min(attempt, 32)))
        return max(self.floor, ceiling * draw())


HISTORY_KEPT = 32  # circuit transitions kept for logs and tests


@dataclass
class CircuitBreaker:
    """Opens on a failed warehouse load; receivers stop polling while it is not closed.

    Valid messages must never burn their receive count into the DLQ during an outage, so
    the worker holds what it has (the heartbeat keeps it invisible), retries the load with
    backoff, and receives nothing new until a load succeeds again.
    """

    clock: Callable[[], float]
    state: CircuitState = CircuitState.CLOSED
    opened_at: float | None = None
    failures: int = 0
    # The latest transitions only: a worker running for months must not grow a list.
    _history: deque[tuple[float, CircuitState]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_KEPT)
    )

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is CircuitState.CLOSED:
            self.opened_at = self.clock()
            self._set(CircuitState.OPEN)
        elif self.state is CircuitState.HALF_OPEN:
            self._set(CircuitState.OPEN)

    def record_attempt(self) -> None:
        """A retry is under way: the breaker is probing the warehouse."""
        if self.state is CircuitState.OPEN:
            self._set(CircuitState.HALF_OPEN)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        if self.state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    @property
    def allows_receiving(self) -> bool:
        return self.state is CircuitState.CLOSED

    def _set(self, state: CircuitState) -> None:
        self.state = state
        self._history.append((self.clock(), state))

    @property
    def history(self) -> tuple[tuple[float, CircuitState], ...]:
        """The last HISTORY_KEPT transitions, oldest first."""
        return tuple(self._history)


@dataclass(frozen=True)
class RejectionPolicy:
    """Whose fault is it when the warehouse refuses rows: the rows', or the table's?

    A row is at fault only when it fails where its neighbours load. When the table itself
    refuses what the mapping accepts (a column's type changed under a running worker), every
    row fails alone with one error, and dead-lettering them would send every valid message
    to the DLQ. The loader bisects a refused batch depth-first, left half first, so the rows
    tried alone come in order: if the first ``probes`` of them fail with one signature and
    nothing has loaded, the table is suspect and bisecting stops. The rest of the batch is
    then loaded in one go: if it loads, the probed rows were bad after all; if it fails with
    the same signature, the table is blamed (the batch is held and retried like an outage).

    Signatures are ``RowsRejectedError.signature``: the error with its values taken out.
    """

    probes: int = 3

    def suspects_table(self, *, rows: int, loaded: int, lone: Sequence[str]) -> bool:
        """After a row failed alone: ``rows`` in the batch, ``loaded`` loads succeeded,
        ``lone`` the signatures of the rows that failed alone so far, in order."""
        return loaded == 0 and len(lone) >= min(self.probes, rows) and len(set(lone)) == 1

    def blames_table(
        self,
        *,
        rows: int,
        loaded: int,
        lone: Sequence[str],
        remainder: str | None,
        active: str | None,
    ) -> bool:
        """The verdict once suspected. ``remainder``: the signature the rest of the batch
        failed with (None if it loaded or the whole batch was tried row by row); ``active``:
        the signature of a table fault not yet cleared by any successful load."""
        if loaded or not lone or len(set(lone)) != 1:
            return False
        signature = lone[0]
        if len(lone) < rows:  # the rest of the batch was tried in one load
            return remainder == signature
        # Every row failed alone the same way: two or more is the table; a batch of one
        # row cannot tell, unless other batches are failing the same way right now.
        return rows >= 2 or signature == active
