"""Parquet objects: the ranged file pyarrow reads, and rows row group by row group, over a
scripted S3 client that answers ranged GetObjects from bytes in memory. (The real S3 path is
tests/integration/test_data_locker_s3.py, on the emulator.)"""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import FailureReason
from sluice.mapping import load_mapping
from sluice.model import MappedRow, ObjectRef, ReceivedMessage
from sluice.objects.csvstream import CorruptObjectError, CsvRecords, Record
from sluice.objects.parquet import ParquetLimits, ParquetRecords, RangeFile
from sluice.objects.rows import map_record
from sluice.objects.s3read import ObjectUnreadableError, ReadPolicy, S3ObjectReader
from sluice.tools.data_locker import gzip_csv, parquet, synth_rows


class RangedS3:
    """GetObject (honouring Range) and HeadObject over ``data``; ``fail_at`` makes that
    request (0-based) fail with ``error``."""

    def __init__(self, data: bytes, fail_at: int | None = None, error: Exception | None = None):
        self.data = data
        self.fail_at = fail_at
        self.error = error
        self.ranges: list[str] = []

    async def head_object(self, **request: Any) -> dict[str, Any]:
        return {"ContentLength": len(self.data)}

    async def get_object(self, **request: Any) -> dict[str, Any]:
        if self.fail_at is not None and len(self.ranges) == self.fail_at:
            self.ranges.append("failed")
            assert self.error is not None
            raise self.error
        spec = request.get("Range", "bytes=0-")
        self.ranges.append(spec)
        first, _, last = spec.removeprefix("bytes=").partition("-")
        end = int(last) + 1 if last else len(self.data)
        return {"Body": _Body(self.data[int(first) : end])}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    async def read(self, amount: int) -> bytes:
        return self.stream.read(amount)

    def close(self) -> None:
        pass


def reader_for(client: RangedS3) -> S3ObjectReader:
    async def factory() -> RangedS3:
        return client

    return S3ObjectReader(factory, ReadPolicy(chunk_bytes=64 * 1024))


REF = ObjectRef("b", "t=inapps/dt=2024-05-01/h=1/part-0.parquet", 0, "etag")


def read_all(data: bytes, limits: ParquetLimits | None = None) -> tuple[list[Record], RangedS3]:
    client = RangedS3(data)

    async def go() -> list[Record]:
        records = ParquetRecords(reader_for(client), REF, limits)
        await records.open()
        return [record async for piece in records.slices() for record in piece]

    return asyncio.run(go()), client


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=3000),
    steps=st.lists(
        st.tuples(st.integers(-50, 3100), st.sampled_from([0, 1, 2]), st.integers(-1, 900))
    ),
    block=st.integers(1, 700),
)
def test_the_range_file_reads_as_a_file_in_memory_does(
    data: bytes, steps: list[tuple[int, int, int]], block: int
) -> None:
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        assert 0 <= start < end <= len(data)
        fetched.append((start, end))
        return data[start:end]

    ranged, plain = RangeFile(fetch, len(data), block), io.BytesIO(data)
    for shift, whence, size in steps:
        offset = max(0, shift) if whence == 0 else shift
        target = max(0, {0: 0, 1: plain.tell(), 2: len(data)}[whence] + offset)
        plain.seek(target)
        assert ranged.seek(offset, whence) == target
        assert ranged.read(size) == plain.read(size)
        assert ranged.tell() == plain.tell()
    assert sum(end - start for start, end in fetched) <= len(steps) * max(block, 900)


def test_rows_come_back_exactly_row_group_by_row_group_in_bounded_reads() -> None:
    rows = list(synth_rows(12_000, seed=3))
    data = parquet(rows, row_group_rows=4_000)
    records, client = read_all(data, ParquetLimits(rows_per_slice=1_000, block_bytes=16 << 10))
    assert [r.fields for r in records] == rows
    assert [r.number for r in records] == list(range(1, 12_001))
    # The footer in a block or two, then column chunks: many reads, none of the whole object.
    assert len(client.ranges) > 3
    sizes = [int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) + 1 for r in client.ranges]
    assert max(sizes) < len(data) / 2


def test_a_parquet_row_maps_as_the_same_csv_row_with_the_same_key() -> None:
    rows = list(synth_rows(50, seed=4))
    from_parquet, _ = read_all(parquet(rows))
    csv = CsvRecords()
    from_csv = [r for piece in csv.feed(gzip_csv(rows)) for r in piece] + csv.finish()
    mapping = load_mapping("appsflyer_data_locker", "t")
    note = ReceivedMessage("n", "h", "{}", 1, 0)
    keys = []
    for parsed in (from_parquet, from_csv):
        mapped = [map_record(mapping, note, 0, REF, record) for record in parsed]
        assert all(isinstance(row, MappedRow) for row in mapped)
        keys.append([row.dedupe_key for row in mapped if isinstance(row, MappedRow)])
    assert keys[0] == keys[1]


def test_typed_and_null_values_become_the_text_a_csv_cell_holds() -> None:
    table = pa.table(
        {
            "AppsFlyer ID": pa.array(["a", None]),
            "Event Revenue": pa.array([1.5, None]),
            "Is Retargeting": pa.array([True, False]),
            "Campaign ID": pa.array([12, 13], pa.int64()),
            "Tags": pa.array([["x", "y"], None]),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    records, _ = read_all(out.getvalue())
    assert [r.fields for r in records] == [
        {
            "AppsFlyer ID": "a",
            "Event Revenue": "1.5",
            "Is Retargeting": "true",
            "Campaign ID": "12",
            "Tags": '["x","y"]',
        },
        {
            "AppsFlyer ID": "",
            "Event Revenue": "",
            "Is Retargeting": "false",
            "Campaign ID": "13",
            "Tags": "",
        },
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated: no footer
        lambda data: b"not parquet at all, just text",
        lambda data: data[:4] + bytes(b ^ 0x5A for b in data[4:2000]) + data[2000:],
        lambda data: data[:-12] + b"\xff" * 8 + data[-4:],  # a footer length past the start
    ],
)
def test_a_corrupt_parquet_object_is_corrupt(damage: Any) -> None:
    data = damage(parquet(list(synth_rows(3_000, seed=5)), row_group_rows=1_000))
    with pytest.raises(CorruptObjectError, match="parquet"):
        read_all(data)


def test_an_s3_error_half_way_is_the_objects_reason_not_corruption() -> None:
    data = parquet(list(synth_rows(3_000, seed=6)), row_group_rows=1_000)
    denied = ClientError(
        {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "GetObject",
    )
    client = RangedS3(data, fail_at=2, error=denied)

    async def go() -> None:
        records = ParquetRecords(reader_for(client), REF, ParquetLimits(block_bytes=4 << 10))
        await records.open()
        async for _ in records.slices():
            pass

    with pytest.raises(ObjectUnreadableError) as info:
        asyncio.run(go())
    assert info.value.reason is FailureReason.ACCESS_DENIED
    assert len(client.ranges) == 3  # the footer's two reads, then the refused one


def test_a_row_group_over_the_bound_refuses_the_object() -> None:
    data = parquet(list(synth_rows(2_000, seed=7)), row_group_rows=2_000)
    with pytest.raises(ObjectUnreadableError, match="row group 0") as info:
        read_all(data, ParquetLimits(max_row_group_bytes=1 << 10))
    assert info.value.reason is FailureReason.OBJECT_UNREADABLE


def test_without_pyarrow_a_parquet_object_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails
    with pytest.raises(ObjectUnreadableError, match=r"sluice\[parquet\]") as info:
        read_all(b"PAR1")
    assert info.value.reason is FailureReason.UNSUPPORTED_OBJECT_TYPE
