"""Streaming one S3 object: GetObject read in chunks, resumed where it broke off.

Memory stays at one chunk: the body is read ``chunk_bytes`` at a time and handed on. A read
that breaks (connection reset, timeout, throttling, a 5xx) is resumed with a ranged GET from
the byte it reached, pinned to the announced version with ``If-Match`` on its ETag (and
``VersionId`` when the bucket is versioned), up to ``attempts`` times in a row with backoff;
after that the error is raised as ``TransientError`` and the message is tried again later.

Errors that reading again cannot mend become ``ObjectUnreadableError`` with their reason:
``NoSuchKey``/``NoSuchBucket`` (object_missing), ``AccessDenied`` (access_denied), any other
error AWS calls permanent (object_unreadable). A failed
``If-Match`` means the object was overwritten since it was announced: ``ObjectSupersededError``
(the newer version has its own notification). Classification is ``aws_errors``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from sluice.aws_errors import NO_ANSWER, AwsService, classify, code_and_status
from sluice.errors import FailureReason, TransientError
from sluice.model import ObjectRef
from sluice.policies import ExponentialBackoff

_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"})
_CHANGED = frozenset({"PreconditionFailed", "412"})


class ObjectUnreadableError(Exception):
    """The object cannot be read at all: the announcing message goes to the DLQ."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ObjectSupersededError(Exception):
    """The object changed after it was announced (its ETag no longer matches)."""


@dataclass(frozen=True)
class ReadPolicy:
    chunk_bytes: int = 256 * 1024
    attempts: int = 5  # broken reads in a row before giving up for now
    backoff: ExponentialBackoff = field(default_factory=lambda: ExponentialBackoff(0.2, 5.0))


class S3ObjectReader:
    """Reads announced objects through an aiobotocore S3 client (made on first use)."""

    def __init__(
        self,
        client: Callable[[], Awaitable[Any]],
        policy: ReadPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self.policy = policy or ReadPolicy()
        self._sleep = sleep
        self.requests = 0
        self.resumed = 0  # reads resumed after a break

    async def chunks(
        self, ref: ObjectRef, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object's bytes from ``start`` up to ``end`` (exclusive; None: its end), in
        order, at most ``chunk_bytes`` at a time."""
        offset = start
        failures = 0
        while end is None or offset < end:
            try:
                async for chunk in self._read_from(ref, offset, end):
                    offset += len(chunk)
                    failures = 0
                    yield chunk
                return
            except ClientError as exc:
                error = _permanent(ref, exc)
                if error is not None:
                    raise error from exc
                cause: BaseException = exc
            except NO_ANSWER as exc:
                cause = exc
            failures += 1
            translated = classify(AwsService.S3, "GetObject", cause)
            if failures >= self.policy.attempts:
                raise TransientError(f"{ref.url}: {translated} ({failures} attempts)") from cause
            self.resumed += 1
            await self._sleep(self.policy.backoff.delay(failures - 1))

    async def read_range(self, ref: ObjectRef, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object, resumed as ``chunks`` is."""
        return b"".join([chunk async for chunk in self.chunks(ref, start, end)])

    async def size_of(self, ref: ObjectRef) -> int:
        """The object's size: the notification's, or HeadObject's (pinned like a read)."""
        if ref.size > 0:
            return ref.size
        request = self._pinned(ref)
        self.requests += 1
        try:
            response = await (await self._client()).head_object(**request)
        except ClientError as exc:
            error = _permanent(ref, exc)
            raise (error or classify(AwsService.S3, "HeadObject", exc)) from exc
        except NO_ANSWER as exc:
            raise classify(AwsService.S3, "HeadObject", exc) from exc
        return int(response["ContentLength"])

    def _pinned(self, ref: ObjectRef) -> dict[str, str]:
        request: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.etag:
            request["IfMatch"] = f'"{ref.etag}"'
        if ref.version_id:
            request["VersionId"] = ref.version_id
        return request

    async def _read_from(
        self, ref: ObjectRef, offset: int, end: int | None = None
    ) -> AsyncIterator[bytes]:
        request = self._pinned(ref)
        if offset or end is not None:
            request["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        self.requests += 1
        response = await (await self._client()).get_object(**request)
        body = response["Body"]
        try:
            while chunk := await body.read(self.policy.chunk_bytes):
                yield chunk
        finally:
            body.close()


def _permanent(ref: ObjectRef, exc: ClientError) -> BaseException | None:
    """The error reading again cannot mend, or None (transient or unknown: classify)."""
    code, status, _ = code_and_status(exc)
    codes = {code, str(status)}
    if codes & _CHANGED:
        return ObjectSupersededError(f"{ref.url}: changed since it was announced (ETag {ref.etag})")
    if codes & _MISSING:
        return ObjectUnreadableError(FailureReason.OBJECT_MISSING, f"{ref.url}: {code or status}")
    if codes & _DENIED:
        return ObjectUnreadableError(FailureReason.ACCESS_DENIED, f"{ref.url}: {code or status}")
    if classify(AwsService.S3, "GetObject", exc).__class__ is TransientError:
        return None
    return ObjectUnreadableError(FailureReason.OBJECT_UNREADABLE, f"{ref.url}: {code or status}")
