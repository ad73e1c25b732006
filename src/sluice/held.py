"""The messages a worker holds: received, not yet deleted, dead-lettered or released.

Each is kept by receipt handle with the size of its body and when SQS would show it again, so
the pipeline can bound what it holds by count and by bytes, extend visibility before it runs
out, and release everything at shutdown. Pure bookkeeping: no I/O, the clock is passed in.

A message whose row is committed and which only waits for its delete is *settling*: it is
still held (its visibility is still extended, and it is released at shutdown if its delete
has not answered), but its body is dropped and it no longer counts against the budget of
``len(held) - settling`` and ``bytes`` that bounds receiving: a finished batch waiting on
hundreds of deletes must not keep the next receives waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sluice.model import ReceivedMessage


def body_size(message: ReceivedMessage) -> int:
    """UTF-8 bytes of the body (SQS's own measure), without encoding ASCII to count it."""
    body = message.body
    return len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class _Held:
    message: ReceivedMessage
    visible_again_at: float
    size: int  # 0 once settling: the body is gone
    settling: bool = False


class HeldMessages:
    def __init__(self) -> None:
        self._by_handle: dict[str, _Held] = {}
        self.bytes = 0
        self.settling = 0  # held only until their delete answers

    def __len__(self) -> int:
        return len(self._by_handle)

    def __bool__(self) -> bool:
        return bool(self._by_handle)

    def add(self, messages: Iterable[ReceivedMessage], visible_again_at: float) -> None:
        for message in messages:
            size = body_size(message)
            previous = self._by_handle.get(message.receipt_handle)
            if previous is not None:
                self._forget(previous)
            self._by_handle[message.receipt_handle] = _Held(message, visible_again_at, size)
            self.bytes += size

    def remove(self, messages: Iterable[ReceivedMessage]) -> None:
        for message in messages:
            held = self._by_handle.pop(message.receipt_handle, None)
            if held is not None:
                self._forget(held)

    def _forget(self, held: _Held) -> None:
        self.bytes -= held.size
        self.settling -= held.settling

    def settle(self, messages: Iterable[ReceivedMessage]) -> None:
        """These are committed and wait only for their delete: drop their bodies, and stop
        counting them against the receive budget."""
        for message in messages:
            held = self._by_handle.get(message.receipt_handle)
            if held is None or held.settling:
                continue
            self.bytes -= held.size
            held.size = 0
            m = held.message  # built directly: dataclasses.replace costs twice as much
            held.message = ReceivedMessage(
                m.message_id, m.receipt_handle, "", m.receive_count, m.sent_timestamp_ms
            )
            held.settling = True
            self.settling += 1

    @property
    def unsettled(self) -> int:
        """Messages held that still count against the receive budget."""
        return len(self._by_handle) - self.settling

    def take_all(self) -> list[ReceivedMessage]:
        """Every message held, no longer held: for releasing at shutdown."""
        messages = [h.message for h in self._by_handle.values()]
        self._by_handle.clear()
        self.bytes = 0
        self.settling = 0
        return messages

    def visible_within(self, now: float, seconds: float) -> list[ReceivedMessage]:
        """Messages SQS would show again within ``seconds``: due for an extension."""
        return [h.message for h in self._by_handle.values() if h.visible_again_at - now < seconds]

    def extended(self, messages: Iterable[ReceivedMessage], visible_again_at: float) -> None:
        for message in messages:
            held = self._by_handle.get(message.receipt_handle)
            if held is not None:
                held.visible_again_at = visible_again_at

    def oldest_sent_ms(self) -> int | None:
        sent = [
            h.message.sent_timestamp_ms
            for h in self._by_handle.values()
            if h.message.sent_timestamp_ms
        ]
        return min(sent, default=None)
