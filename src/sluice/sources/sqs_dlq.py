"""Dead letters to an SQS DLQ: the original body, the producer's attributes and Sluice's.

A letter must fit the DLQ's MaximumMessageSize with everything Sluice adds, or it can never
be dead-lettered and cycles until the redrive policy moves it without a reason. So each
letter is fitted before it is sent: ``sluice.detail`` is shrunk first (never the body), then
the producer's attributes are dropped, largest first, and named in a log line; a body that
cannot fit even then is refused here with that reason rather than sent to fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from sluice.model import SQS_MAX_MESSAGE_BYTES, DeadLetter, ReceivedMessage, SettleResult
from sluice.sources.sqs_attributes import (
    MAX_ATTRIBUTES,
    attribute_size,
    message_size,
    producer_attributes,
    size_bounded_groups,
    to_wire,
)
from sluice.sources.sqs_send import Outgoing, send_group

DETAIL_CHARS = 1024  # the most of a reason's detail a dead letter carries
SEND_ATTEMPTS = 3  # a settle waits on these: keep short, SQS redelivers what fails


def sluice_attributes(letter: DeadLetter, worker_id: str, detail: str) -> dict[str, Any]:
    def text(value: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": value or "-"}

    return {
        "sluice.reason": text(letter.reason.value),
        "sluice.detail": text(detail),
        "sluice.source_message_id": text(letter.message.message_id),
        "sluice.receive_count": {
            "DataType": "Number",
            "StringValue": str(letter.message.receive_count),
        },
        "sluice.worker": text(worker_id),
    }


@dataclass(frozen=True)
class Fitted:
    """A letter ready to send, or the reason it cannot be (``outgoing`` is None)."""

    outgoing: Outgoing | None
    dropped: tuple[str, ...] = ()
    refused: str = ""


def _shrink_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes."""
    return text.encode()[: max(limit, 0)].decode(errors="ignore")


def fit_letter(letter: DeadLetter, worker_id: str, max_bytes: int) -> Fitted:
    """Body intact; detail, then producer attributes, given up until it fits ``max_bytes``."""
    body = letter.message.body or " "  # SQS refuses an empty body
    theirs = to_wire(producer_attributes(letter.message))
    room = MAX_ATTRIBUTES - 5
    dropped = sorted(theirs)[room:]  # over SQS's ten attributes: keep the first by name
    for name in dropped:
        del theirs[name]
    detail = letter.detail[:DETAIL_CHARS]
    while True:
        if dropped:
            detail = f"{letter.detail[:DETAIL_CHARS]} [attributes not kept: {', '.join(dropped)}]"
        ours = sluice_attributes(letter, worker_id, detail)
        over = message_size(body, ours | theirs) - max_bytes
        if over > 0:
            # Shrink the detail first: a reason's words matter less than what was sent.
            kept = len(detail.encode()) - over
            if kept >= 1:
                ours = sluice_attributes(letter, worker_id, _shrink_utf8(detail, kept))
                over = 0
        if over <= 0:
            return Fitted(Outgoing(body, ours | theirs), tuple(dropped))
        if not theirs:
            break
        largest = max(theirs, key=lambda n: attribute_size(n, theirs[n]))
        del theirs[largest]
        dropped = sorted([*dropped, largest])
    bare = message_size(body, sluice_attributes(letter, worker_id, "-"))
    return Fitted(
        None,
        tuple(dropped),
        f"too_large: body of {len(body.encode())} bytes with Sluice's attributes "
        f"({bare} bytes) exceeds the DLQ's MaximumMessageSize of {max_bytes} bytes",
    )


class SqsDeadLetterQueue:
    """Sends permanent failures to a DLQ; ``max_bytes`` is its MaximumMessageSize."""

    def __init__(
        self, client: Any, url: str, worker_id: str, max_bytes: int = SQS_MAX_MESSAGE_BYTES
    ) -> None:
        self._client = client
        self.url = url
        self._worker_id = worker_id
        self.max_bytes = max_bytes
        self.log = structlog.get_logger("sluice.dlq").bind(worker=worker_id)

    async def send(self, letters: Sequence[DeadLetter]) -> SettleResult:
        ready: list[tuple[DeadLetter, Outgoing]] = []
        failed: list[tuple[ReceivedMessage, str]] = []
        for letter in letters:
            fitted = fit_letter(letter, self._worker_id, self.max_bytes)
            if fitted.dropped:
                self.log.warning(
                    "dead_letter_attributes_dropped",
                    message_id=letter.message.message_id,
                    dropped=list(fitted.dropped),
                )
            if fitted.outgoing is None:
                failed.append((letter.message, fitted.refused))
            else:
                ready.append((letter, fitted.outgoing))
        succeeded: list[ReceivedMessage] = []
        numbered = list(enumerate(ready))
        groups = size_bounded_groups(numbered, lambda item: item[1][1].size)
        for group in groups:
            report = await send_group(
                self._client,
                self.url,
                [(i, outgoing) for i, (_, outgoing) in group],
                attempts=SEND_ATTEMPTS,
            )
            succeeded.extend(ready[i][0].message for i in report.sent)
            failed.extend((ready[i][0].message, why) for i, why in report.failed)
        return SettleResult(tuple(succeeded), tuple(failed))
