"""One SendMessageBatch call, retried: the primitive both the dead-letter path and the tools use.

A group is at most SQS's ten entries and 1 MiB (the caller bounds it with
``size_bounded_groups``). Transient failures of the call or of single entries are retried;
an entry SQS refuses as the sender's fault fails at once. The report names each message that
could not be delivered and why, so a caller never mistakes a failed entry for a sent one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import PermanentError, TransientError
from sluice.policies import ExponentialBackoff
from sluice.sources.sqs import call
from sluice.sources.sqs_attributes import message_size

MAX_SEND_ATTEMPTS = 8


@dataclass(frozen=True)
class Outgoing:
    """One message to send: a body and the MessageAttributes parameter for it."""

    body: str
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)


@dataclass
class SendReport:
    """Which messages (by position in the input) were sent, and which failed and why."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


async def send_group(
    client: Any,
    url: str,
    messages: Sequence[tuple[int, Outgoing]],
    *,
    attempts: int = MAX_SEND_ATTEMPTS,
) -> SendReport:
    """Send one group, retrying transient failures; a sender's fault fails its entry at once."""
    pending = {str(i): m for i, m in messages}
    report = SendReport()
    backoff = ExponentialBackoff(base=0.05, cap=2.0)
    last = "not tried"
    for attempt in range(attempts):
        entries = [_entry(i, m) for i, m in pending.items()]
        try:
            response = await call(
                client.send_message_batch, "SendMessageBatch", QueueUrl=url, Entries=entries
            )
        except TransientError as exc:
            last = str(exc)
            await asyncio.sleep(backoff.delay(attempt))
            continue
        except PermanentError as exc:  # the whole call refused: no entry was sent
            report.failed.extend((int(i), str(exc)) for i in pending)
            return report
        for ok in response.get("Successful", ()):
            if pending.pop(ok["Id"], None) is not None:
                report.sent.append(int(ok["Id"]))
        for bad in response.get("Failed", ()):
            why = f"{bad.get('Code', '')}: {bad.get('Message', '')}"
            last = why
            if bad.get("SenderFault") and pending.pop(bad["Id"], None) is not None:
                report.failed.append((int(bad["Id"]), why))
        if not pending:
            return report
        await asyncio.sleep(backoff.delay(attempt))
    report.failed.extend((int(i), f"not sent after {attempts} tries: {last}") for i in pending)
    return report


def _entry(entry_id: str, message: Outgoing) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = dict(message.attributes)
    return entry
