"""The narrow protocol the pipeline needs from a queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sluice.model import DeadLetter, ReceivedMessage, SettleResult


@dataclass(frozen=True, slots=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class Source(Protocol):
    """A queue the pipeline drains. Methods raise TransientError or PermanentError only."""

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]: ...

    async def delete(self, messages: Sequence[ReceivedMessage]) -> SettleResult: ...

    async def change_visibility(
        self, messages: Sequence[ReceivedMessage], seconds: int
    ) -> SettleResult: ...

    async def depth(self) -> QueueDepth: ...


class DeadLetterTarget(Protocol):
    """Where permanent failures go, with their original body and reason."""

    async def send(self, letters: Sequence[DeadLetter]) -> SettleResult: ...
