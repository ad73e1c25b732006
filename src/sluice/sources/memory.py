"""An in-memory SQS twin for unit tests of pure logic: visibility, receive counts, a clock.

Never the only test of a feature: the same behaviour is tested against the emulator.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sluice.model import DeadLetter, ReceivedMessage, SettleResult
from sluice.sources.base import QueueDepth


@dataclass
class _Stored:
    message_id: str
    body: str
    sent_ms: int
    attributes: tuple[tuple[str, str, str | bytes], ...] = ()
    receive_count: int = 0
    visible_at: float = 0.0
    handle: str | None = None


@dataclass
class MemoryQueue:
    clock: Callable[[], float]
    _messages: dict[str, _Stored] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    calls: dict[str, int] = field(default_factory=dict)

    def put(self, body: str, attributes: tuple[tuple[str, str, str | bytes], ...] = ()) -> str:
        message_id = f"m-{next(self._ids)}"
        self._messages[message_id] = _Stored(
            message_id, body, int(self.clock() * 1000), tuple(sorted(attributes))
        )
        return message_id

    def _count(self, action: str) -> None:
        self.calls[action] = self.calls.get(action, 0) + 1

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        self._count("receive")
        await asyncio.sleep(0)
        now = self.clock()
        out: list[ReceivedMessage] = []
        for stored in self._messages.values():
            if len(out) == max_messages:
                break
            if stored.visible_at <= now:
                stored.receive_count += 1
                stored.visible_at = now + visibility_timeout
                stored.handle = f"{stored.message_id}#{stored.receive_count}"
                out.append(
                    ReceivedMessage(
                        stored.message_id,
                        stored.handle,
                        stored.body,
                        stored.receive_count,
                        stored.sent_ms,
                        stored.attributes,
                    )
                )
        if not out and wait_seconds:
            await asyncio.sleep(0.001)
        return out

    def _find(self, message: ReceivedMessage) -> _Stored | None:
        stored = self._messages.get(message.message_id)
        return stored if stored is not None and stored.handle == message.receipt_handle else None

    async def delete(self, messages: Sequence[ReceivedMessage]) -> SettleResult:
        self._count("delete")
        ok: list[ReceivedMessage] = []
        bad: list[tuple[ReceivedMessage, str]] = []
        for message in messages:
            stored = self._messages.get(message.message_id)
            if stored is None:
                bad.append((message, "ReceiptHandleIsInvalid"))
            elif stored.handle != message.receipt_handle:
                # As SQS does: a handle from an earlier receive is answered as a success,
                # but only the latest receive's handle deletes the message.
                ok.append(message)
            else:
                del self._messages[message.message_id]
                ok.append(message)
        return SettleResult(tuple(ok), tuple(bad))

    async def change_visibility(
        self, messages: Sequence[ReceivedMessage], seconds: int
    ) -> SettleResult:
        self._count("change_visibility")
        ok: list[ReceivedMessage] = []
        bad: list[tuple[ReceivedMessage, str]] = []
        for message in messages:
            stored = self._find(message)
            if stored is None:
                bad.append((message, "ReceiptHandleIsInvalid"))
            else:
                stored.visible_at = self.clock() + seconds
                ok.append(message)
        return SettleResult(tuple(ok), tuple(bad))

    async def depth(self) -> QueueDepth:
        now = self.clock()
        visible = sum(1 for s in self._messages.values() if s.visible_at <= now)
        return QueueDepth(visible, len(self._messages) - visible, 0)

    @property
    def bodies(self) -> list[str]:
        return [s.body for s in self._messages.values()]


@dataclass
class MemoryDeadLetters:
    letters: list[DeadLetter] = field(default_factory=list)

    async def send(self, letters: Sequence[DeadLetter]) -> SettleResult:
        self.letters.extend(letters)
        return SettleResult(tuple(letter.message for letter in letters), ())
