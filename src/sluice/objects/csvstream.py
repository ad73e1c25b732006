"""Gzip (or plain) CSV bytes to rows, incrementally, with bounded memory. Pure.

Bytes go in as they arrive from S3; complete records come out. The decompressor's output is
capped per step (``max_text_bytes``), so a small compressed chunk that inflates to gigabytes
is handled in slices; text never accumulates beyond one slice plus an unfinished record.

A record ends at a newline outside quotes: with RFC 4180 quoting (a quote inside a quoted
field is doubled), that is a newline after an even number of quote characters in the
record. Complete records are then read by ``csv.reader``, one call per slice, so a field's
embedded newlines, quotes and commas are read as the csv module reads them.

Concatenated gzip members (what ``cat a.gz b.gz`` makes) are read as one stream.
"""

from __future__ import annotations

import codecs
import csv
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

GZIP_MAGIC = b"\x1f\x8b"
MAX_TEXT_BYTES = 1 << 20  # decompressed bytes per slice


class CorruptObjectError(Exception):
    """The bytes are not the gzip CSV they claim to be (bad gzip, truncated, not UTF-8)."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A data record that cannot become a row: its number (1 = first after the header),
    why (no values), and its fields as read, for the error report."""

    number: int
    why: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Record:
    number: int
    fields: dict[str, str]


Parsed = Record | BadRecord


class CsvRecords:
    """Feed compressed bytes with ``feed``; call ``finish`` at the end of the object."""

    def __init__(self, *, max_text_bytes: int = MAX_TEXT_BYTES) -> None:
        self._max = max_text_bytes
        self._gzip: bool | None = None  # decided by the first two bytes
        self._head = b""  # the first byte, while the second has not come
        self._inflate = zlib.decompressobj(wbits=31)
        self._text = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self._carry = ""  # text after the last newline
        self._open: list[str] = []  # lines of a record still inside quotes
        self._open_quotes = 0
        self._header: tuple[str, ...] | None = None
        self._records = 0  # data records seen (the header not counted)
        self._member_open = False  # bytes fed to a gzip member whose end is not seen yet
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def header(self) -> tuple[str, ...] | None:
        return self._header

    @property
    def gzip(self) -> bool | None:
        """Whether the object is gzip (None until its first two bytes are in)."""
        return self._gzip

    @property
    def records(self) -> int:
        return self._records

    def feed(self, data: bytes) -> Iterator[list[Parsed]]:
        """Rows completed by ``data``, in slices (one list per decompressed slice)."""
        self.bytes_in += len(data)
        if self._gzip is None:
            # Decided on the first two bytes, which may arrive one at a time.
            data = self._head + data
            if len(data) < len(GZIP_MAGIC):
                self._head = data
                return
            self._head = b""
            self._gzip = data[:2] == GZIP_MAGIC
        if not self._gzip:
            yield self._lines(self._decode(data, final=False))
            return
        pending = data
        while pending:
            self._member_open = True
            try:
                out = self._inflate.decompress(pending, self._max)
            except zlib.error as exc:
                raise CorruptObjectError(f"gzip: {exc} (compressed byte {self.bytes_in})") from None
            pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                # One gzip member ended; another may follow (concatenated members).
                pending = self._inflate.unused_data + pending
                self._inflate = zlib.decompressobj(wbits=31)
                self._member_open = False
                if pending and pending[:2] != GZIP_MAGIC[: len(pending)]:
                    raise CorruptObjectError("gzip: bytes after the end of the gzip stream")
            if out:
                yield self._lines(self._decode(out, final=False))

    def finish(self) -> list[Parsed]:
        """The last record (if the object does not end with a newline); checks the end."""
        parsed: list[Parsed] = []
        if self._gzip is None and self._head:
            self._gzip = False  # one byte in all: plain text
            parsed = self._lines(self._decode(self._head, final=False))
        if self._gzip and self._member_open:
            raise CorruptObjectError("gzip: the stream ends before its end marker (truncated)")
        parsed.extend(self._lines(self._decode(b"", final=True)))
        last = "\n".join([*self._open, self._carry]) if self._open else self._carry
        self._open, self._carry = [], ""
        if last.strip():
            parsed.extend(self._read([last]))
        return parsed

    def _decode(self, data: bytes, *, final: bool) -> str:
        self.bytes_out += len(data)
        try:
            return self._text.decode(data, final)
        except UnicodeDecodeError as exc:
            raise CorruptObjectError(f"not UTF-8 text ({exc.reason})") from None

    def _lines(self, text: str) -> list[Parsed]:
        if not text:
            return []
        lines = (self._carry + text).split("\n")
        self._carry = lines.pop()
        complete: list[str] = []
        for line in lines:
            record = line
            quotes = line.count('"')
            if self._open or quotes % 2:
                self._open.append(line)
                self._open_quotes += quotes
                if self._open_quotes % 2:
                    continue  # still inside a quoted field
                record = "\n".join(self._open)
                self._open, self._open_quotes = [], 0
            if record and record != "\r":
                complete.append(record)
        return self._read(complete)

    def _read(self, lines: list[str]) -> list[Parsed]:
        parsed: list[Parsed] = []
        for line in lines:
            try:
                # A reader per record: one that found a record malformed cannot pull the
                # next record into it.
                fields = next(csv.reader((line,), strict=True))
            except csv.Error as exc:
                if self._header is None:
                    raise CorruptObjectError(f"the header line is not CSV: {exc}") from None
                self._records += 1
                parsed.append(BadRecord(self._records, f"not CSV: {exc}", (line,)))
                continue
            if self._header is None:
                self._header = tuple(fields)
                continue
            self._records += 1
            if len(fields) != len(self._header):
                parsed.append(
                    BadRecord(
                        self._records,
                        f"{len(fields)} fields, the header has {len(self._header)}",
                        tuple(fields),
                    )
                )
                continue
            parsed.append(Record(self._records, dict(zip(self._header, fields, strict=True))))
        return parsed
