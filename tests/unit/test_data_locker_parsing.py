"""Data Locker parsing: gzip CSV split into rows however the bytes arrive, notifications into
objects to load or skip. Property-based where the input is arbitrary."""

from __future__ import annotations

import csv
import gzip
import io

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.decode import decode_message, objects_announced
from sluice.errors import FailureReason
from sluice.mapping import load_mapping
from sluice.model import DeadLetter, Ignored, ObjectRef, ObjectsAnnounced, ReceivedMessage
from sluice.objects.csvstream import BadRecord, CorruptObjectError, CsvRecords, Record
from sluice.objects.layout import ObjectKind, kind_of_key, partition_of
from sluice.objects.rows import header_problem, map_record
from sluice.tools.data_locker import TEST_EVENT, gzip_csv, notification, synth_rows

MAPPING = load_mapping("appsflyer_data_locker", "t")
CELLS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


def message(body: str) -> ReceivedMessage:
    return ReceivedMessage("m-1", "rh-1", body, 1, 1_714_566_896_789)


def encode(header: list[str], rows: list[list[str]], *, crlf: bool = True) -> bytes:
    out = io.StringIO()
    # With LF line ends a lone CR is not quoted by csv.writer, and every reader takes it
    # for a line end: quote every field then.
    writer = csv.writer(
        out,
        lineterminator="\r\n" if crlf else "\n",
        quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL,
    )
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def read_all(data: bytes, cuts: list[int], max_text: int = 64) -> list[Record | BadRecord]:
    records = CsvRecords(max_text_bytes=max_text)
    found: list[Record | BadRecord] = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        for piece in records.feed(data[start:cut]):
            found.extend(piece)
        start = cut
    found.extend(records.finish())
    return found


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 5),
    data=st.data(),
    zipped=st.booleans(),
    crlf=st.booleans(),
)
def test_rows_come_back_exactly_however_the_bytes_are_cut(
    width: int, data: st.DataObject, zipped: bool, crlf: bool
) -> None:
    header = [f"h{i}" for i in range(width)]
    rows = data.draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), max_size=20))
    # A row of one empty cell is written as an empty line, which CSV readers skip.
    rows = [r for r in rows if r != [""]]
    raw = encode(header, rows, crlf=crlf)
    payload = gzip.compress(raw) if zipped else raw
    cuts = data.draw(st.lists(st.integers(0, len(payload)), max_size=8))
    found = read_all(payload, cuts)
    assert all(isinstance(r, Record) for r in found)
    assert [list(r.fields.values()) for r in found if isinstance(r, Record)] == rows
    assert [r.number for r in found] == list(range(1, len(rows) + 1))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4))
def test_arbitrary_bytes_give_rows_or_a_corrupt_object_never_anything_else(
    blob: bytes, cuts: list[int]
) -> None:
    try:
        found = read_all(gzip.compress(blob) if blob[:1] == b"z" else blob, cuts)
    except CorruptObjectError:
        return
    assert all(isinstance(r, Record | BadRecord) for r in found)


def test_concatenated_gzip_members_read_as_one_object() -> None:
    first = gzip.compress(b"a,b\r\n1,2\r\n")
    second = gzip.compress(b"3,4\r\n")
    found = read_all(first + second, [5, len(first), len(first) + 3])
    assert [r.fields for r in found if isinstance(r, Record)] == [
        {"a": "1", "b": "2"},
        {"a": "3", "b": "4"},
    ]


def test_truncated_and_garbled_gzip_are_corrupt() -> None:
    data = gzip_csv(list(synth_rows(50, seed=1)))
    with pytest.raises(CorruptObjectError, match="truncated"):
        read_all(data[: len(data) // 2], [])
    garbled = data[:40] + bytes(b ^ 0xFF for b in data[40:80]) + data[80:]
    with pytest.raises(CorruptObjectError):
        read_all(garbled, [])


def test_a_row_with_the_wrong_number_of_fields_is_a_bad_record_and_the_rest_load() -> None:
    found = read_all(b"a,b\n1,2\n1,2,3\n4,5\n", [])
    assert isinstance(found[1], BadRecord)
    assert found[1].number == 2
    assert "3 fields" in found[1].why
    assert [r.number for r in found if isinstance(r, Record)] == [1, 3]


def test_a_huge_inflation_is_read_in_bounded_slices() -> None:
    data = gzip.compress(b"a\n" + b"x\n" * 2_000_000)
    records = CsvRecords(max_text_bytes=64 * 1024)
    largest = 0
    count = 0
    for piece in records.feed(data):
        largest = max(largest, len(piece))
        count += len(piece)
    count += len(records.finish())
    assert count == 2_000_000
    assert largest <= 64 * 1024 // 2 + 1  # one slice's worth of two-byte records


# -- mapping a row ------------------------------------------------------------------------


def test_a_data_locker_row_maps_to_the_push_mapping_columns() -> None:
    fields = next(synth_rows(1, seed=3))
    ref = ObjectRef("b", "t=inapps/dt=2024-05-01/h=1/part.csv.gz")
    row = map_record(MAPPING, message("{}"), 0, ref, Record(1, fields))
    assert not isinstance(row, DeadLetter)
    names = [c.name for c in MAPPING.load_columns]
    values = dict(zip(names, row.values, strict=True))
    assert values["appsflyer_id"] == fields["AppsFlyer ID"]
    assert values["message_id"] == "m-1#0:1"
    assert orjson.loads(str(values["raw_event"])) == fields
    # the key is the row's content: the same row read again (anywhere) has the same key
    again = map_record(MAPPING, message("{}"), 3, ObjectRef("c", "other.csv.gz"), Record(9, fields))
    assert not isinstance(again, DeadLetter)
    assert again.dedupe_key == row.dedupe_key


def test_a_row_that_does_not_fit_is_reported_without_its_values() -> None:
    fields = next(synth_rows(1, seed=3, bad_rows=[1]))
    ref = ObjectRef("b", "k.csv.gz")
    letter = map_record(MAPPING, message("{}"), 0, ref, Record(1, fields))
    assert isinstance(letter, DeadLetter)
    assert letter.reason is FailureReason.ROW_DOES_NOT_FIT
    assert letter.detail.startswith("s3://b/k.csv.gz row 1: wrong_type: event_time")
    assert "not a time" not in letter.detail
    assert orjson.loads(letter.message.body) == fields


def test_a_header_without_the_required_columns_is_refused() -> None:
    assert header_problem(MAPPING, ["AppsFlyer ID", "Event Name", "Event Time"]) is None
    problem = header_problem(MAPPING, ["appsflyer_id", "event_name", "event_time"])
    assert problem is not None
    assert "'AppsFlyer ID'" in problem


# -- notifications ------------------------------------------------------------------------


@pytest.mark.parametrize("sns", [False, True])
def test_a_notification_announces_its_object_with_the_key_decoded(sns: bool) -> None:
    key = "data locker/t=inapps/dt=2024-05-01/h=1/part 00000.csv.gz"
    decoded = decode_message(
        message(notification("b", key, size=9, etag='"abc"', sns=sns)), MAPPING
    )
    assert isinstance(decoded, ObjectsAnnounced)
    assert decoded.objects == (ObjectRef("b", key, 9, "abc"),)
    assert partition_of(key) is not None


def test_markers_removals_and_other_types_are_skipped_and_parquet_loadable() -> None:
    marker = decode_message(message(notification("b", "t=x/dt=d/h=1/_SUCCESS")), MAPPING)
    assert isinstance(marker, ObjectsAnnounced)
    assert marker.objects == ()
    assert "marker" in marker.skipped[0][1]
    removed = orjson.loads(notification("b", "t=x/dt=d/h=1/p.csv.gz"))
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    gone = objects_announced(removed, message(""))
    assert gone.objects == ()
    parquet = decode_message(message(notification("b", "t=x/dt=d/h=1/p.snappy.parquet")), MAPPING)
    assert isinstance(parquet, ObjectsAnnounced)
    assert [ref.key for ref in parquet.objects] == ["t=x/dt=d/h=1/p.snappy.parquet"]
    assert decode_message(message(TEST_EVENT), MAPPING) == Ignored(
        message(TEST_EVENT), "s3:TestEvent"
    )


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("t=a/dt=b/h=1/part-00000.gz", ObjectKind.CSV),
        ("t=a/dt=b/h=1/part-00000.csv", ObjectKind.CSV),
        ("t=a/dt=b/h=1/_SUCCESS", ObjectKind.MARKER),
        ("t=a/dt=b/h=1/", ObjectKind.MARKER),
        ("t=a/dt=b/h=1/part.parquet", ObjectKind.PARQUET),
        ("t=a/dt=b/h=1/readme.txt", ObjectKind.OTHER),
    ],
)
def test_kinds_of_keys(key: str, kind: ObjectKind) -> None:
    assert kind_of_key(key) is kind


RECORD = st.fixed_dictionaries(
    {
        "eventSource": st.sampled_from(["aws:s3", "aws:s3", "aws:sqs"]),
        "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "", 3]),
        "s3": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "bucket": st.one_of(
                        st.none(), st.fixed_dictionaries({"name": st.text(max_size=5)})
                    ),
                    "object": st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {
                                "key": st.one_of(st.text(max_size=20), st.integers(0, 9)),
                                "size": st.one_of(
                                    st.integers(-(2**63), 2**63 - 1),
                                    st.text(max_size=3),
                                    st.booleans(),
                                ),
                                "eTag": st.one_of(st.text(max_size=5), st.none()),
                            }
                        ),
                    ),
                }
            ),
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORD, max_size=4), st.booleans())
def test_any_notification_decodes_to_objects_or_one_dead_letter(
    records: list[dict[str, object]], sns: bool
) -> None:
    body = orjson.dumps({"Records": records}).decode()
    if sns:
        body = orjson.dumps({"Type": "Notification", "TopicArn": "arn", "Message": body}).decode()
    decoded = decode_message(message(body), MAPPING)
    if isinstance(decoded, ObjectsAnnounced):
        assert len(decoded.objects) + len(decoded.skipped) == len(records)
        assert all(ref.bucket and ref.key for ref in decoded.objects)
    if isinstance(decoded, DeadLetter):
        assert decoded.reason is not FailureReason.INTERNAL_ERROR
