"""A total-queue checker in the style of Jepsen's: did every message end where it should?

Given every body sent (and whether it is valid), the rows in the target (count per dedupe
key), the bodies in the DLQ and what is still in the queue after the deadline, it reports:

- lost: valid, sent, and neither in the target nor in the DLQ;
- duplicated: more than one row for a key;
- unexpected: a row whose key nobody sent;
- misrouted: a valid message in the DLQ, or an invalid one in the target;
- stuck: messages still in the queue (visible or in flight) after the deadline.

A run passes only when all five are zero and at least ``min_messages`` went through, so a
stalled pipeline cannot pass. Pure: the caller gathers the inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import orjson

from sluice.decode import unwrap
from sluice.errors import MessageError
from sluice.mapping import TableMapping


@dataclass(frozen=True)
class Sent:
    body: str
    valid: bool


@dataclass(frozen=True)
class CheckReport:
    sent_valid: int
    sent_invalid: int
    loaded_rows: int
    dead_lettered: int
    lost: tuple[str, ...]
    duplicated: Mapping[str, int]
    unexpected: tuple[str, ...]
    misrouted: tuple[str, ...]
    stuck: int
    min_messages: int

    @property
    def through(self) -> int:
        return self.loaded_rows + self.dead_lettered

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.duplicated
            and not self.unexpected
            and not self.misrouted
            and self.stuck == 0
            and self.through >= self.min_messages
        )

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return (
            f"{verdict}: sent {self.sent_valid} valid + {self.sent_invalid} invalid; "
            f"rows {self.loaded_rows}, DLQ {self.dead_lettered}; lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
            f"misrouted {len(self.misrouted)}, stuck {self.stuck}"
            + (
                ""
                if self.through >= self.min_messages
                else f"; only {self.through} through, at least {self.min_messages} required"
            )
        )


def body_id(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def check(
    sent: Iterable[Sent],
    target_rows: Mapping[str, int],
    dlq_bodies: Iterable[str],
    still_queued: int,
    key_of: Callable[[str], str],
    *,
    min_messages: int = 1000,
) -> CheckReport:
    """``key_of`` maps a body to the dedupe key Sluice would give it (raises if it cannot)."""
    valid_keys: set[str] = set()
    invalid_keys: set[str] = set()
    valid_ids: set[str] = set()
    counts = Counter[str]()
    for item in sent:
        counts["valid" if item.valid else "invalid"] += 1
        if item.valid:
            valid_keys.add(key_of(item.body))
            valid_ids.add(body_id(item.body))
            continue
        # One that cannot even be keyed certainly cannot be in the target.
        with contextlib.suppress(MessageError, orjson.JSONDecodeError, ValueError, TypeError):
            invalid_keys.add(key_of(item.body))
    dlq = list(dlq_bodies)
    in_dlq_valid = [body_id(b) for b in dlq if body_id(b) in valid_ids]
    dlq_valid_keys = {key_of(b) for b in dlq if body_id(b) in valid_ids}
    lost = sorted(valid_keys - set(target_rows) - dlq_valid_keys)
    misrouted = sorted(in_dlq_valid) + sorted(invalid_keys & set(target_rows))
    return CheckReport(
        sent_valid=counts["valid"],
        sent_invalid=counts["invalid"],
        loaded_rows=sum(target_rows.values()),
        dead_lettered=len(dlq),
        lost=tuple(lost),
        duplicated={k: n for k, n in target_rows.items() if n > 1},
        unexpected=tuple(sorted(set(target_rows) - valid_keys - invalid_keys)),
        misrouted=tuple(misrouted),
        stuck=still_queued,
        min_messages=min_messages,
    )


def key_function(mapping: TableMapping) -> Callable[[str], str]:
    """The dedupe key Sluice gives a body, for ``check``'s ``key_of``."""

    def key_of(body: str) -> str:
        unwrapped = unwrap(body)
        if unwrapped is None:
            raise ValueError("the message carries nothing to load")
        return mapping.dedupe_key(*unwrapped)

    return key_of


def file_rows_sent(rows: Iterable[tuple[Mapping[str, str], bool]]) -> list[Sent]:
    """Rows of S3 objects (AppsFlyer Data Locker), each with whether it should load, as
    what ``check`` compares: the row's JSON object, which is both what its dedupe key is
    made from (``key_function`` of the file mapping) and the body of its error-report letter
    in the DLQ. Rows of an object that cannot be read at all are not valid: the object's
    notification is dead-lettered instead, and ``check`` counts it with the DLQ."""
    return [Sent(orjson.dumps(dict(fields)).decode(), valid) for fields, valid in rows]
