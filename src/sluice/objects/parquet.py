"""Parquet objects, row group by row group, through ranged reads of S3 (pyarrow).

pyarrow reads a Parquet file by seeking: the footer first (the schema and where each row
group's column chunks are), then the column chunks of one row group at a time. ``RangeFile``
is the file it reads: each read is a ranged GetObject (``S3ObjectReader.read_range``: pinned
to the announced ETag, resumed when it breaks), with reads under ``block_bytes`` served from
one block read ahead, so the footer's small reads cost one or two requests.

pyarrow's calls are blocking, so they run in a worker thread; ``RangeFile`` hands each read
to the event loop and waits for it. Memory: one row group's column chunks as read, that
row group decoded (pyarrow decodes a row group whole), and ``rows_per_slice`` rows as
Python values. A row group larger than ``max_row_group_bytes`` uncompressed refuses the
object (``object_unreadable``) rather than risk the worker's memory: Data Locker writes row
groups of a few tens of MB.

Each row becomes a ``Record`` of ``{column name: text}``, the text a CSV export would carry
for it: null is ``""`` (an empty cell), strings stay as they are, other scalars are cast to
text by Arrow (``true``, ``12``, ``2024-05-01 12:34:56.789000``), nested values are JSON. So
a row mapped from Parquet is the same row, with the same dedupe key, as the same row read
from a CSV object with the same text.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from sluice.errors import FailureReason
from sluice.extras import PARQUET
from sluice.model import ObjectRef
from sluice.objects.csvstream import CorruptObjectError, Record
from sluice.objects.s3read import ObjectUnreadableError, S3ObjectReader

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class ParquetLimits:
    rows_per_slice: int = 5_000  # rows turned into Python values at once
    block_bytes: int = 1 << 20  # reads smaller than this are served from one block
    max_row_group_bytes: int = 512 << 20  # uncompressed; a larger row group refuses the object


def unsupported() -> ObjectUnreadableError:
    """The error for a Parquet object in a build without pyarrow."""
    return ObjectUnreadableError(
        FailureReason.UNSUPPORTED_OBJECT_TYPE,
        f"Parquet objects need the {PARQUET} extra: pip install 'sluice[{PARQUET}]' "
        "(or choose CSV in the Data Locker settings)",
    )


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over ``fetch(start, end)``, for pyarrow (blocking)."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, block_bytes: int) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._block_bytes = block_bytes
        self._position = 0
        self._block_start = 0
        self._block = b""
        self.requests = 0
        self.bytes_fetched = 0
        self.error: BaseException | None = None  # what a read raised (pyarrow may wrap it)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def size(self) -> int:
        return self._size

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        if end <= start:
            return b""
        block_end = self._block_start + len(self._block)
        if not (self._block_start <= start and end <= block_end):
            if end - start >= self._block_bytes:
                data = self._get(start, end)  # a column chunk: read as asked, not kept
                self._position = end
                return data
            self._block_start = start
            self._block = self._get(start, min(self._size, start + self._block_bytes))
        offset = start - self._block_start
        self._position = end
        return self._block[offset : offset + end - start]

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _get(self, start: int, end: int) -> bytes:
        self.requests += 1
        try:
            data = self._fetch(start, end)
        except BaseException as exc:
            self.error = exc
            raise
        self.bytes_fetched += len(data)
        return data


class ParquetRecords:
    """One Parquet object's rows as ``Record`` slices: ``open`` reads the footer (the
    header), then ``slices`` yields up to ``rows_per_slice`` records at a time."""

    def __init__(
        self, reader: S3ObjectReader, ref: ObjectRef, limits: ParquetLimits | None = None
    ) -> None:
        self._reader = reader
        self._ref = ref
        self.limits = limits or ParquetLimits()
        self._file: RangeFile | None = None
        self._parquet: pq.ParquetFile | None = None
        self.header: tuple[str, ...] = ()
        self.records = 0

    @property
    def bytes_in(self) -> int:
        return self._file.bytes_fetched if self._file is not None else 0

    @property
    def requests(self) -> int:
        return self._file.requests if self._file is not None else 0

    async def open(self) -> tuple[str, ...]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise unsupported() from None
        loop = asyncio.get_running_loop()
        reader, ref = self._reader, self._ref

        def fetch(start: int, end: int) -> bytes:
            return asyncio.run_coroutine_threadsafe(
                reader.read_range(ref, start, end), loop
            ).result()

        size = await reader.size_of(ref)
        self._file = RangeFile(fetch, size, self.limits.block_bytes)
        parquet = await self._blocking(lambda: pq.ParquetFile(self._file, pre_buffer=False))
        metadata = parquet.metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            if group.total_byte_size > self.limits.max_row_group_bytes:
                raise ObjectUnreadableError(
                    FailureReason.OBJECT_UNREADABLE,
                    f"{ref.url}: row group {index} is {group.total_byte_size >> 20} MiB "
                    f"uncompressed, over the {self.limits.max_row_group_bytes >> 20} MiB a "
                    "worker reads at once",
                )
        self._parquet = parquet
        self.header = tuple(parquet.schema_arrow.names)
        return self.header

    async def slices(self) -> AsyncIterator[list[Record]]:
        assert self._parquet is not None, "open first"
        batches = self._parquet.iter_batches(
            batch_size=self.limits.rows_per_slice, use_threads=False
        )
        end = object()
        while True:
            batch = await self._blocking(lambda: next(batches, end))
            if batch is end:
                return
            yield self._records(batch)

    def _records(self, batch: pa.RecordBatch) -> list[Record]:
        names = batch.schema.names
        columns = [_as_text(batch.column(i)) for i in range(batch.num_columns)]
        records = []
        for values in zip(*columns, strict=True):
            self.records += 1
            records.append(Record(self.records, dict(zip(names, values, strict=True))))
        return records

    async def _blocking(self, work: Callable[[], Any]) -> Any:
        """``work`` (pyarrow's blocking reads) in a thread; its failure as the object's."""
        import pyarrow as pa

        try:
            return await asyncio.to_thread(work)
        except (pa.ArrowException, OSError, ValueError) as exc:
            cause = self._file.error if self._file is not None else None
            if cause is not None:
                raise cause from None  # S3's error, which pyarrow passed through
            raise CorruptObjectError(f"parquet: {exc}") from None


def _as_text(column: pa.Array) -> list[str]:
    """A column's values as the text a CSV cell would hold for them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        try:
            column = column.cast(pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            return [
                "" if value is None else orjson.dumps(value, default=str).decode()
                for value in column.to_pylist()
            ]
    values: list[str] = pc.fill_null(column, "").to_pylist()
    return values
