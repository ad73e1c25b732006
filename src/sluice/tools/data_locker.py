"""Synthetic AppsFlyer Data Locker objects and their S3 event notifications, for the tests,
the benchmark and demos: gzip CSV (or Parquet) with the raw-data export's headers."""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import orjson

HEADER: tuple[str, ...] = (
    "Attributed Touch Type",
    "Attributed Touch Time",
    "Install Time",
    "Event Time",
    "Event Name",
    "Event Value",
    "Event Revenue",
    "Event Revenue Currency",
    "Event Revenue USD",
    "Event Source",
    "Is Receipt Validated",
    "Partner",
    "Media Source",
    "Channel",
    "Keywords",
    "Campaign",
    "Campaign ID",
    "Adset",
    "Ad",
    "Region",
    "Country Code",
    "State",
    "City",
    "IP",
    "WIFI",
    "Language",
    "AppsFlyer ID",
    "Advertising ID",
    "IDFA",
    "Customer User ID",
    "IDFV",
    "Platform",
    "Device Type",
    "OS Version",
    "App Version",
    "SDK Version",
    "App ID",
    "App Name",
    "Is Retargeting",
    "Is Primary Attribution",
    "User Agent",
)
_EVENTS = ("af_purchase", "af_login", "af_content_view", "af_add_to_cart", "install")


def synth_rows(
    count: int, *, seed: int, hour: datetime | None = None, bad_rows: Sequence[int] = ()
) -> Iterator[dict[str, str]]:
    """``count`` distinct rows; row numbers in ``bad_rows`` (1-based) get an Event Time that
    is no timestamp, so they do not fit the mapping."""
    rng = random.Random(seed)  # noqa: S311  synthetic data, not secrets
    start = hour or datetime(2024, 5, 1, tzinfo=UTC).replace(tzinfo=None)
    bad = set(bad_rows)
    for number in range(1, count + 1):
        at = start + timedelta(milliseconds=rng.randrange(3_600_000))
        name = rng.choice(_EVENTS)
        revenue = f"{rng.randrange(0, 10_000) / 100:.2f}" if name == "af_purchase" else ""
        value = orjson.dumps({"af_revenue": revenue, "note": 'a "quoted", comma'}).decode()
        yield {
            "Attributed Touch Type": rng.choice(("click", "impression", "")),
            "Attributed Touch Time": "",
            "Install Time": (at - timedelta(days=rng.randrange(30))).isoformat(sep=" "),
            "Event Time": "not a time" if number in bad else at.isoformat(sep=" "),
            "Event Name": name,
            "Event Value": value,
            "Event Revenue": revenue,
            "Event Revenue Currency": "USD" if revenue else "",
            "Event Revenue USD": revenue,
            "Event Source": "SDK",
            "Is Receipt Validated": "",
            "Partner": "",
            "Media Source": rng.choice(("organic", "googleadwords_int", "Facebook Ads")),
            "Channel": "",
            "Keywords": "",
            "Campaign": f"campaign {rng.randrange(50)}, spring",
            "Campaign ID": str(rng.randrange(10**9)),
            "Adset": "",
            "Ad": "",
            "Region": "EU",
            "Country Code": rng.choice(("DE", "FR", "GB", "US")),
            "State": "",
            "City": "Zürich",
            "IP": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "WIFI": rng.choice(("true", "false")),
            "Language": "en-US",
            "AppsFlyer ID": f"{seed}-{number}-{rng.getrandbits(48):012x}",
            "Advertising ID": "",
            "IDFA": "",
            "Customer User ID": f"user-{rng.randrange(100_000)}",
            "IDFV": "",
            "Platform": rng.choice(("ios", "android")),
            "Device Type": "iPhone15,2",
            "OS Version": "17.4",
            "App Version": "5.2.0",
            "SDK Version": "v6.13.0",
            "App ID": "id123456789",
            "App Name": "Example",
            "Is Retargeting": rng.choice(("true", "false")),
            "Is Primary Attribution": "true",
            "User Agent": "Example/5.2.0 (iPhone; iOS 17.4)",
        }


def gzip_csv(rows: Iterator[dict[str, str]] | Sequence[dict[str, str]]) -> bytes:
    """The rows as one gzip CSV object with ``HEADER`` (as Data Locker writes them)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as packed:
        text = io.TextIOWrapper(packed, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, HEADER)
        writer.writeheader()
        writer.writerows(rows)
        text.flush()
        text.detach()
    return out.getvalue()


def parquet(
    rows: Iterator[dict[str, str]] | Sequence[dict[str, str]], *, row_group_rows: int = 50_000
) -> bytes:
    """The rows as one Parquet object with ``HEADER`` (string columns, snappy, row groups of
    ``row_group_rows``), as Data Locker writes them when Parquet is chosen. Needs pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in HEADER])
    out = io.BytesIO()
    with pq.ParquetWriter(out, schema, compression="snappy") as writer:
        group: list[dict[str, str]] = []
        for row in rows:
            group.append(row)
            if len(group) == row_group_rows:
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
                group = []
        if group:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
    return out.getvalue()


def folder(prefix: str, report: str, hour: datetime) -> str:
    """``<prefix>/t=<report>/dt=<date>/h=<hour>/``, Data Locker's layout."""
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{head}t={report}/dt={hour:%Y-%m-%d}/h={hour.hour}/"


def notification(bucket: str, key: str, *, size: int = 0, etag: str = "", sns: bool = False) -> str:
    """The S3 event notification for a new object (raw, or inside an SNS envelope)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T01:05:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "data-locker",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key, safe="/="),
                "size": size,
                "eTag": etag.strip('"'),
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }
    body = orjson.dumps({"Records": [record]}).decode()
    if not sns:
        return body
    return orjson.dumps(
        {
            "Type": "Notification",
            "MessageId": "00000000-0000-0000-0000-000000000000",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:data-locker",
            "Subject": "Amazon S3 Notification",
            "Message": body,
            "Timestamp": "2024-05-01T01:05:00.000Z",
        }
    ).decode()


TEST_EVENT = orjson.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-05-01T00:00:00.000Z",
        "Bucket": "b",
    }
).decode()
