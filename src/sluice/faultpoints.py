"""Test-only crash points, named: the leaf that sinks and the fault wrappers share.

The pipeline knows nothing of them: ``runtime.faults`` wraps the source and the sink to crash
between receive and processing, after a commit, or between two deletes. Only the points that
must fall inside a warehouse transaction (mid-staging, just before COMMIT) are reached from
within the sinks, through a ``FaultHook`` that does nothing in production.
"""

from __future__ import annotations

import enum
from typing import Protocol


class FaultPoint(enum.Enum):
    """Test-only crash points: the worker SIGKILLs itself when it reaches one."""

    AFTER_RECEIVE = "after_receive"
    MID_STAGING = "mid_staging"
    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"
    MID_DELETE = "mid_delete"


class FaultHook(Protocol):
    """Where a crash point is reached; the production hook does nothing."""

    def hit(self, point: FaultPoint) -> None: ...


class NoFaults:
    def hit(self, point: FaultPoint) -> None:
        return None
