"""Loading the objects one message announces, and deciding how to settle that message.

Each object is streamed (``s3read``), inflated and split into records (``csvstream``; a
Parquet object is read row group by row group through ranged reads, ``parquet``), mapped
(``rows``) and loaded through the pipeline's own ``Loader`` in loads of ``rows_per_load``
rows: the same sink, the same merge, the same retries and circuit breaker. Reading waits
while a load runs, so at most one load's rows and one chunk (or row group) are in memory
per object, and ``concurrency`` objects load at once in a worker. The message stays held
meanwhile and the pipeline's heartbeat keeps it invisible.

How the message is settled:
- every object loaded (rows that did not fit are in the error report): deleted;
- an object cannot be read at all (missing, access denied, corrupt gzip, a header without
  the mapping's required columns, too many rows that do not fit): dead-lettered with that
  reason; the rows already loaded stay (a redrive reloads them as no-ops);
- a transient failure (S3 throttling, 5xx, connection; the DLQ not taking the report): kept,
  so it reappears after its visibility timeout and is loaded again; the merge absorbs
  what had committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from sluice.errors import FailureReason, SluiceError, TransientError
from sluice.loading import Loader
from sluice.mapping import TableMapping
from sluice.model import (
    DeadLetter,
    MappedRow,
    ObjectRef,
    ObjectsAnnounced,
    ObjectsSettled,
    ReceivedMessage,
)
from sluice.objects.copy import ObjectCopier, csv_object, read_header
from sluice.objects.csvstream import CorruptObjectError, CsvRecords, Parsed
from sluice.objects.layout import ObjectKind, kind_of_key, partition_of
from sluice.objects.parquet import ParquetLimits, ParquetRecords
from sluice.objects.report import ErrorReport
from sluice.objects.rows import header_problem, map_record
from sluice.objects.s3read import ObjectSupersededError, ObjectUnreadableError, S3ObjectReader
from sluice.sinks.base import error_signature
from sluice.sinks.redshift.object_copy import copy_problem, header_copy_problem

REPORT_EVERY = 500  # failed rows sent to the report in groups of this many


@dataclass(frozen=True)
class ObjectLimits:
    rows_per_load: int = 5_000
    max_failed_rows: int = 10_000  # more than this in one object: the object is refused
    concurrency: int = 1  # objects loading at once in one worker
    parquet: ParquetLimits = field(default_factory=ParquetLimits)


@dataclass
class _Tally:
    """What one object's load has done so far."""

    inserted: int = 0
    already_present: int = 0
    failed: int = 0
    rows: int = 0
    pending: dict[str, MappedRow] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)


class ObjectLoader:
    """The ``ObjectHandler`` the worker builds: reader, mapping, report and limits."""

    def __init__(
        self,
        reader: S3ObjectReader,
        mapping: TableMapping,
        report: ErrorReport,
        log: structlog.typing.FilteringBoundLogger,
        limits: ObjectLimits | None = None,
        *,
        copy_from_s3: bool = False,
    ) -> None:
        self.reader = reader
        self.mapping = mapping
        self.report = report
        self.log = log
        self.limits = limits or ObjectLimits()
        self._slots = asyncio.Semaphore(self.limits.concurrency)
        # The profile says the warehouse copies objects from S3 (objects/copy.py): why this
        # mapping cannot, or None.
        self.copy_problem = copy_problem(mapping) if copy_from_s3 else "not this warehouse"
        if copy_from_s3 and self.copy_problem:
            log.info("object_copy_off", why=self.copy_problem)

    async def __call__(self, announced: ObjectsAnnounced, loader: Loader) -> ObjectsSettled:
        message = announced.message
        for ref, why in announced.skipped:
            self.log.info("object_skipped", object=ref.url, why=why, message_id=message.message_id)
        totals = _Tally()
        for index, ref in enumerate(announced.objects):
            try:
                async with self._slots:
                    tally = await self._load_object(announced, index, ref, loader)
            except (ObjectUnreadableError, CorruptObjectError) as exc:
                reason, detail = _refusal(ref, exc)
                self.log.warning(
                    "object_refused", object=ref.url, reason=reason.value, detail=detail
                )
                return _settled(message, totals, dead=DeadLetter(message, reason, detail))
            except ObjectSupersededError as exc:
                self.log.info("object_superseded", object=ref.url, detail=str(exc))
                continue
            except TransientError as exc:
                self.log.warning("object_retry_later", object=ref.url, error=str(exc))
                return _settled(message, totals, retry=True)
            totals.inserted += tally.inserted
            totals.already_present += tally.already_present
            totals.failed += tally.failed
        return _settled(message, totals)

    async def _load_object(
        self, announced: ObjectsAnnounced, index: int, ref: ObjectRef, loader: Loader
    ) -> _Tally:
        if kind_of_key(ref.key) is ObjectKind.PARQUET:
            return await self._load_parquet(announced, index, ref, loader)
        copier = loader.sink
        if self.copy_problem is None and isinstance(copier, ObjectCopier) and copier.copies_objects:
            copied = await self._copy(announced, index, ref, copier)
            if copied is not None:
                return copied
        records = CsvRecords()
        tally = _Tally()
        checked = False
        async for chunk in self.reader.chunks(ref):
            for parsed in records.feed(chunk):
                if not checked and records.header is not None:
                    self._check_header(ref, records.header)
                    checked = True
                await self._take(announced, index, ref, parsed, tally=tally, loader=loader)
        last = records.finish()
        if not checked:
            self._check_header(ref, records.header or ())
        await self._take(announced, index, ref, last, tally=tally, loader=loader)
        return await self._finish(ref, tally, loader, records.bytes_in, form="csv", path="stream")

    async def _copy(
        self, announced: ObjectsAnnounced, index: int, ref: ObjectRef, copier: ObjectCopier
    ) -> _Tally | None:
        """The object loaded by COPY from S3, or None: stream it (see objects/copy.py)."""
        found = await read_header(self.reader, ref)
        if found is None:
            return None
        header, form = found
        self._check_header(ref, header)
        problem = header_copy_problem(header)
        if problem is not None:
            self.log.info("object_copy_skipped", object=ref.url, why=problem)
            return None
        source = csv_object(ref, header, form, announced.message, index)
        try:
            result = await copier.copy_csv_object(source)
        except SluiceError as exc:
            # The warehouse's text may quote a value: its signature only, at info.
            self.log.info(
                "object_copy_refused",
                object=ref.url,
                kind=type(exc).__name__,
                error=error_signature(str(exc)),
            )
            return None
        tally = _Tally(result.inserted, result.already_present)
        tally.rows = result.inserted + result.already_present
        return await self._finish(ref, tally, None, 0, form="csv", path="copy")

    async def _load_parquet(
        self, announced: ObjectsAnnounced, index: int, ref: ObjectRef, loader: Loader
    ) -> _Tally:
        records = ParquetRecords(self.reader, ref, self.limits.parquet)
        tally = _Tally()
        self._check_header(ref, await records.open())
        async for parsed in records.slices():
            await self._take(announced, index, ref, parsed, tally=tally, loader=loader)
        return await self._finish(
            ref, tally, loader, records.bytes_in, form="parquet", path="stream"
        )

    async def _finish(
        self,
        ref: ObjectRef,
        tally: _Tally,
        loader: Loader | None,
        bytes_in: int,
        *,
        form: str,
        path: str,
    ) -> _Tally:
        """The object's last load and report, and its log line."""
        if loader is not None:
            await self._load(tally, loader)
            await self._report(ref, tally)
        partition = partition_of(ref.key)
        self.log.info(
            "object_loaded",
            object=ref.url,
            format=form,
            path=path,
            rows=tally.rows,
            inserted=tally.inserted,
            already_present=tally.already_present,
            failed=tally.failed,
            bytes=bytes_in,
            **(
                {"report": partition.report, "dt": partition.date, "h": partition.hour}
                if partition
                else {}
            ),
        )
        return tally

    def _check_header(self, ref: ObjectRef, header: Sequence[str]) -> None:
        problem = header_problem(self.mapping, header)
        if problem is not None:
            raise ObjectUnreadableError(FailureReason.HEADER_MISMATCH, f"{ref.url}: {problem}")

    async def _take(
        self,
        announced: ObjectsAnnounced,
        index: int,
        ref: ObjectRef,
        parsed: Sequence[Parsed],
        *,
        tally: _Tally,
        loader: Loader,
    ) -> None:
        for item in parsed:
            tally.rows += 1
            row = map_record(self.mapping, announced.message, index, ref, item)
            if isinstance(row, DeadLetter):
                tally.letters.append(row)
            elif row.dedupe_key in tally.pending:
                tally.already_present += 1  # the same row twice in one load
            else:
                tally.pending[row.dedupe_key] = row
        if len(tally.pending) >= self.limits.rows_per_load:
            await self._load(tally, loader)
        if len(tally.letters) >= REPORT_EVERY:
            await self._report(ref, tally)

    async def _load(self, tally: _Tally, loader: Loader) -> None:
        if not tally.pending:
            return
        rows = list(tally.pending.values())
        tally.pending.clear()
        outcome = await loader.load(rows)
        tally.inserted += outcome.result.inserted
        tally.already_present += outcome.result.already_present
        tally.letters.extend(outcome.rejected)

    async def _report(self, ref: ObjectRef, tally: _Tally) -> None:
        letters, tally.letters = tally.letters, []
        tally.failed += len(letters)
        if tally.failed > self.limits.max_failed_rows:
            raise ObjectUnreadableError(
                FailureReason.ROW_DOES_NOT_FIT,
                f"{ref.url}: more than {self.limits.max_failed_rows} rows do not fit the "
                "mapping (is this the right mapping?)",
            )
        await self.report.send(ref, letters)


def _refusal(ref: ObjectRef, exc: Exception) -> tuple[FailureReason, str]:
    if isinstance(exc, ObjectUnreadableError):
        return exc.reason, exc.detail
    return FailureReason.CORRUPT_OBJECT, f"{ref.url}: {exc}"


def _settled(
    message: ReceivedMessage,
    totals: _Tally,
    *,
    dead: DeadLetter | None = None,
    retry: bool = False,
) -> ObjectsSettled:
    return ObjectsSettled(
        message,
        dead=dead,
        retry=retry,
        inserted=totals.inserted,
        already_present=totals.already_present,
        rows_failed=totals.failed,
    )
