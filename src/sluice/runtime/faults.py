"""Test-only crash points (SLUICE_FAULT_POINT): SIGKILL ourselves at a named step.

Lets the fault suite kill a worker exactly between load and commit, or between commit and
delete, which an external kill could only hit by luck.
"""

from __future__ import annotations

import os
import signal

from sluice.config import FaultPoint


class FaultInjector:
    def __init__(self, point: FaultPoint | None, after: int = 1) -> None:
        self._point = point
        self._after = after
        self._seen = 0

    def hit(self, point: FaultPoint) -> None:
        if point is not self._point:
            return
        self._seen += 1
        if self._seen >= self._after:
            os.kill(os.getpid(), signal.SIGKILL)
