"""Batches staged in S3 for Redshift's COPY: gzip JSON lines plus a manifest.

Each load writes under its own prefix, ``<staging prefix>/<worker>/<yyyy/mm/dd>/<uuid>/``,
so concurrent loads and workers never share an object, and an S3 lifecycle rule on the
staging prefix can expire anything a crash left behind. ``PutObject`` twice (data, then the
manifest that names it), and one ``DeleteObjects`` once the load is over, whatever its
outcome: after a commit the objects are spent, after a failure the retry writes new ones.

The COPY of an object already in S3 (a Data Locker object) stages a manifest alone
(``stage_manifest``): without one, ``COPY ... FROM 's3://bucket/key'`` takes the key as a
prefix and loads every object whose key begins with it.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from sluice.aws_errors import AwsService, classify
from sluice.convert import ColumnType
from sluice.errors import TransientError
from sluice.mapping import TableMapping
from sluice.model import MappedRow


@dataclass(frozen=True)
class StagingLocation:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, uri: str) -> StagingLocation:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("must be an s3://bucket/prefix URI")
        return cls(parts.netloc, parts.path.strip("/"))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class StagedBatch:
    """Objects of one staged load: the manifest COPY reads, and every key to delete."""

    manifest_url: str
    keys: tuple[str, ...]
    bytes_written: int


def encode_lines(mapping: TableMapping, rows: Sequence[MappedRow]) -> bytes:
    """One JSON object per row, keyed by column name; JSON columns nested as JSON."""
    names = [c.name for c in mapping.load_columns]
    kinds = [c.type for c in mapping.load_columns]
    out = bytearray()
    for row in rows:
        record = {
            name: _json_value(kind, value)
            for name, kind, value in zip(names, kinds, row.values, strict=True)
        }
        out += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    return bytes(out)


def _json_value(kind: ColumnType, value: object) -> object:
    if value is None:
        return None
    if kind is ColumnType.JSON and isinstance(value, str):
        return orjson.Fragment(value)  # already JSON text (convert.to_json): nest it as is
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))  # exact digits, never through a float
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def manifest_body(entries: Sequence[tuple[str, int | None]]) -> bytes:
    """A COPY manifest naming exactly these ``(url, byte length or None)`` objects. Every
    entry is mandatory: COPY fails when one is missing instead of loading the others. The
    length (``meta.content_length``) only columnar formats require; given where known."""
    listed: list[dict[str, object]] = []
    for url, length in entries:
        entry: dict[str, object] = {"url": url, "mandatory": True}
        if length is not None:
            entry["meta"] = {"content_length": length}
        listed.append(entry)
    return orjson.dumps({"entries": listed})


class S3Stager:
    """Writes and removes staged batches through an aiobotocore S3 client."""

    def __init__(
        self, client: Callable[[], Awaitable[Any]], location: StagingLocation, worker_id: str
    ) -> None:
        self._client = client
        self._location = location
        self._worker = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in worker_id)
        self.requests = 0  # S3 calls made
        self.bytes_staged = 0

    def _prefix(self, today: date) -> str:
        parts = [self._location.prefix, self._worker, today.strftime("%Y/%m/%d"), str(uuid.uuid4())]
        return "/".join(p for p in parts if p)

    async def stage(self, mapping: TableMapping, rows: Sequence[MappedRow]) -> StagedBatch:
        # Encoding and compressing a batch of megabytes takes tens of ms: off the loop.
        body = await asyncio.to_thread(
            lambda: gzip.compress(encode_lines(mapping, rows), compresslevel=1, mtime=0)
        )
        prefix = self._prefix(datetime.now(UTC).date())
        data_key = f"{prefix}/part-00000.json.gz"
        manifest_key = f"{prefix}/manifest.json"
        manifest = manifest_body([(self._location.url(data_key), len(body))])
        await self._put(data_key, body, "application/gzip")
        await self._put(manifest_key, manifest, "application/json")
        self.bytes_staged += len(body) + len(manifest)
        return StagedBatch(
            self._location.url(manifest_key), (data_key, manifest_key), len(body) + len(manifest)
        )

    async def stage_manifest(self, urls: Sequence[str]) -> StagedBatch:
        """A manifest alone, naming objects that are already in S3 (no length: CSV needs
        none, and the object may have been replaced since it was announced). Removed by
        ``remove`` like a staged batch; the objects it names are not touched."""
        manifest_key = f"{self._prefix(datetime.now(UTC).date())}/manifest.json"
        manifest = manifest_body([(url, None) for url in urls])
        await self._put(manifest_key, manifest, "application/json")
        self.bytes_staged += len(manifest)
        return StagedBatch(self._location.url(manifest_key), (manifest_key,), len(manifest))

    async def _put(self, key: str, body: bytes, content_type: str) -> None:
        self.requests += 1
        try:
            # A file object, not bytes: the HTTP client then streams it in chunks instead
            # of copying megabytes on the event loop.
            await (await self._client()).put_object(
                Bucket=self._location.bucket,
                Key=key,
                Body=io.BytesIO(body),
                ContentLength=len(body),
                ContentType=content_type,
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise classify(AwsService.S3, "PutObject", exc) from exc

    async def remove(self, staged: StagedBatch) -> None:
        self.requests += 1
        try:
            response = await (await self._client()).delete_objects(
                Bucket=self._location.bucket,
                Delete={"Objects": [{"Key": k} for k in staged.keys], "Quiet": True},
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise classify(AwsService.S3, "DeleteObjects", exc) from exc
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise TransientError(
                f"S3 DeleteObjects left {len(errors)} object(s): "
                f"{first.get('Code', '')} {first.get('Message', '')}".strip()
            )

    async def ping(self) -> None:
        """Can this worker list its staging prefix? (Start-up check of bucket and rights.)"""
        self.requests += 1
        try:
            await (await self._client()).list_objects_v2(
                Bucket=self._location.bucket, Prefix=self._location.prefix, MaxKeys=1
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise classify(AwsService.S3, "ListObjectsV2", exc) from exc
