"""What the pipeline needs from whatever loads announced objects: one call per message."""

from __future__ import annotations

from typing import Protocol

from sluice.loading import Loader
from sluice.model import ObjectsAnnounced, ObjectsSettled


class ObjectHandler(Protocol):
    async def __call__(self, announced: ObjectsAnnounced, loader: Loader) -> ObjectsSettled:
        """Load the announced objects' rows through ``loader``; say how to settle the
        message. Never raises for what an object holds (a bug may still raise)."""
        ...
