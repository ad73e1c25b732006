"""The object reader's decisions, over a scripted S3 client: resume a broken read from the
byte it reached, give up for now after repeated breaks, name the reason of lasting errors.
(The real S3 path is tests/integration/test_data_locker_s3.py, on the emulator.)"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from sluice.errors import FailureReason, TransientError
from sluice.model import ObjectRef
from sluice.objects.s3read import (
    ObjectSupersededError,
    ObjectUnreadableError,
    ReadPolicy,
    S3ObjectReader,
)

DATA = bytes(range(256)) * 40
REF = ObjectRef("b", "t=x/dt=d/h=1/p.csv.gz", len(DATA), "etag1")


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


class Body:
    def __init__(self, data: bytes, break_after: int | None) -> None:
        self.data = data
        self.sent = 0
        self.break_after = break_after

    async def read(self, amount: int) -> bytes:
        if self.break_after is not None and self.sent >= self.break_after:
            raise aiohttp.ClientPayloadError("connection reset")
        chunk = self.data[self.sent : self.sent + amount]
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        pass


class ScriptedS3:
    """Answers GetObject from DATA; ``script`` says what each call does first."""

    def __init__(self, script: list[Exception | int | None]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []

    async def get_object(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        start = int(request["Range"].split("=")[1].rstrip("-")) if "Range" in request else 0
        return {"Body": Body(DATA[start:], step)}


def read(client: ScriptedS3, attempts: int = 5) -> bytes:
    async def factory() -> ScriptedS3:
        return client

    async def no_sleep(_: float) -> None:
        return None

    reader = S3ObjectReader(
        factory, ReadPolicy(chunk_bytes=1000, attempts=attempts), sleep=no_sleep
    )

    async def go() -> bytes:
        return b"".join([chunk async for chunk in reader.chunks(REF)])

    return asyncio.run(go())


def test_a_broken_read_resumes_from_the_byte_it_reached_pinned_to_the_etag() -> None:
    client = ScriptedS3([3000, client_error("SlowDown", 503), 2000, None])
    assert read(client) == DATA
    assert [r.get("Range") for r in client.requests] == [
        None,
        "bytes=3000-",
        "bytes=3000-",
        "bytes=5000-",
    ]
    assert all(r["IfMatch"] == '"etag1"' for r in client.requests)


def test_breaks_in_a_row_give_up_for_now_as_transient() -> None:
    client = ScriptedS3([client_error("InternalError", 500)] * 3)
    with pytest.raises(TransientError, match="3 attempts"):
        read(client, attempts=3)


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("NoSuchKey", 404, FailureReason.OBJECT_MISSING),
        ("NoSuchBucket", 404, FailureReason.OBJECT_MISSING),
        ("AccessDenied", 403, FailureReason.ACCESS_DENIED),
        ("InvalidArgument", 400, FailureReason.OBJECT_UNREADABLE),
    ],
)
def test_lasting_errors_name_their_reason(code: str, status: int, reason: FailureReason) -> None:
    with pytest.raises(ObjectUnreadableError) as info:
        read(ScriptedS3([client_error(code, status)]))
    assert info.value.reason is reason


def test_an_object_overwritten_since_its_notification_is_superseded() -> None:
    with pytest.raises(ObjectSupersededError):
        read(ScriptedS3([client_error("PreconditionFailed", 412)]))
