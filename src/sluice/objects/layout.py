"""What an S3 key is: rows to load, a marker, or something else. Pure.

AppsFlyer Data Locker writes ``<prefix>/t=<report>/dt=<yyyy-mm-dd>/h=<hour>/part-....gz``
(gzip CSV), or ``....parquet`` when Parquet is chosen, and a ``_SUCCESS`` marker once an
hour's folder is complete.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_PARTITION = re.compile(r"(?:^|/)t=(?P<report>[^/]+)/dt=(?P<date>[^/]+)(?:/h=(?P<hour>[^/]+))?/")
_MARKERS = ("_SUCCESS", "_COMPLETED", "_temporary")


class ObjectKind(enum.Enum):
    CSV = "csv"  # gzip or plain CSV: loaded
    PARQUET = "parquet"  # Data Locker's other format: loaded (needs the parquet extra)
    MARKER = "marker"  # _SUCCESS and the like: acknowledged, nothing to load
    OTHER = "other"  # anything else: acknowledged, nothing to load


def kind_of_key(key: str) -> ObjectKind:
    name = key.rsplit("/", 1)[-1]
    lowered = name.lower()
    if not name or key.endswith("/") or name.startswith(_MARKERS) or lowered.endswith("$folder$"):
        return ObjectKind.MARKER
    if lowered.endswith((".parquet", ".parq")):
        return ObjectKind.PARQUET
    if lowered.endswith((".csv", ".csv.gz", ".gz", ".csv.gzip")):
        return ObjectKind.CSV
    return ObjectKind.OTHER


@dataclass(frozen=True)
class Partition:
    """The Data Locker folder an object sits in (for logs and the error report)."""

    report: str
    date: str
    hour: str | None


def partition_of(key: str) -> Partition | None:
    match = _PARTITION.search(key)
    if match is None:
        return None
    return Partition(match["report"], match["date"], match["hour"])
