"""How a worker process sets CPython's cyclic garbage collector.

A worker holds every message it has received until the row is committed: tens of thousands
of small container objects (a Redshift batch filling while three others load). CPython's
default starts a young-generation collection every 700 net allocations, and every object
still alive is traversed again as it is promoted through the generations. Measured on the
Redshift benchmark path (200,000 messages, one run each, docs/performance.md): the worker's
CPU was 26.6 s with the default threshold, 23.2 s with the collector off and 23.9 s with a
young threshold of 10,000. What a worker allocates per message is freed by reference
counting; cycles (tracebacks, tasks) are still collected, only less often, and the older
generations keep their default thresholds.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass


@dataclass(frozen=True)
class CollectorPolicy:
    young_threshold: int = 10_000

    def apply(self) -> None:
        """Call once the process is set up: what start-up created is long-lived, so it is
        moved out of the collector's way (``gc.freeze``) before the threshold is raised."""
        gc.collect()
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(self.young_threshold, middle, old)
