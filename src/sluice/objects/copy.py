"""The COPY path for a CSV object: the warehouse reads the object from S3 itself.

Chosen by capability: the warehouse's profile says it copies objects from S3
(``WarehouseProfile.copies_s3_objects``), its sink can (``ObjectCopier.copies_objects``:
Redshift with an IAM role and S3 staging, where the one-entry manifest naming the object is
written), the mapping qualifies (``object_copy.copy_problem``) and so does
the object's header. Otherwise, and whenever the COPY transaction fails for any reason (a
row not in the plain form, a value the warehouse refuses, COPY's own errors, an outage),
the object is loaded by the streaming path, which reports each row that does not fit as it
always does; nothing of the failed COPY was merged, and the keys are the same on both paths.

Only the object's first bytes are read here, for its header (checked against the mapping as
on the streaming path, so a wrong header is still ``header_mismatch``) and its form (gzip
or not).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from sluice.model import LoadResult, ObjectRef, ReceivedMessage
from sluice.objects.csvstream import CsvRecords
from sluice.objects.s3read import S3ObjectReader
from sluice.sinks.redshift.object_copy import CopyForm, CsvObject

HEADER_BYTES = 1 << 20  # compressed bytes read at most to find the header
_EPOCH = datetime(1970, 1, 1)


@runtime_checkable
class ObjectCopier(Protocol):
    """A sink that can COPY a CSV object from S3 and merge it in one transaction."""

    @property
    def copies_objects(self) -> bool: ...

    async def copy_csv_object(self, source: CsvObject) -> LoadResult: ...


async def read_header(
    reader: S3ObjectReader, ref: ObjectRef, limit: int = HEADER_BYTES
) -> tuple[tuple[str, ...], CopyForm] | None:
    """The object's header and form from its first bytes, or None when no header ends in
    the first ``limit`` bytes. Raises as reading the object does (missing, denied, corrupt)."""
    records = CsvRecords()
    async with contextlib.aclosing(reader.chunks(ref)) as chunks:
        async for chunk in chunks:
            for _ in records.feed(chunk):
                if records.header is not None:
                    break
            if records.header is not None or records.bytes_in >= limit:
                break
    if records.header is None:
        return None
    return records.header, CopyForm.CSV_GZIP if records.gzip else CopyForm.CSV


def csv_object(
    ref: ObjectRef,
    header: tuple[str, ...],
    form: CopyForm,
    notification: ReceivedMessage,
    index: int,
) -> CsvObject:
    """What the COPY of ``ref`` needs; ids and ``sent_at`` as the streaming path makes them,
    but one ``message_id`` for every row (COPY does not number rows)."""
    sent_at = (
        _EPOCH + timedelta(milliseconds=notification.sent_timestamp_ms)
        if notification.sent_timestamp_ms
        else None
    )
    return CsvObject(ref.url, header, form, f"{notification.message_id}#{index}:copy", sent_at)
