"""The fault proxy's COMMIT sniffer follows a PostgreSQL client stream chunk by chunk."""

from __future__ import annotations

from tests.support.tcp_proxy import LONGEST_COMMIT, CommitSniffer


def _startup() -> bytes:
    body = (196608).to_bytes(4, "big") + b"user\x00sluice\x00\x00"
    return (len(body) + 4).to_bytes(4, "big") + body


def _query(text: str) -> bytes:
    body = text.encode() + b"\x00"
    return b"Q" + (len(body) + 4).to_bytes(4, "big") + body


def _parse(text: str) -> bytes:
    body = b"\x00" + text.encode() + b"\x00" + (0).to_bytes(2, "big")
    return b"P" + (len(body) + 4).to_bytes(4, "big") + body


def _feed_in_chunks(sniffer: CommitSniffer, stream: bytes, chunk: int) -> int:
    return sum(sniffer.feed(stream[i : i + chunk]) for i in range(0, len(stream), chunk))


def test_commits_are_counted_across_chunk_boundaries() -> None:
    stream = _startup() + _query("BEGIN") + _parse("INSERT INTO t VALUES (1)") + _query("COMMIT")
    stream += _parse("commit;") + _query("SELECT 1")
    for chunk in (1, 3, 7, 64, len(stream)):
        assert _feed_in_chunks(CommitSniffer(), stream, chunk) == 2


def test_a_long_statement_is_skipped_not_buffered() -> None:
    sniffer = CommitSniffer()
    huge = "INSERT INTO t VALUES " + ", ".join(["('COMMIT')"] * 100_000)
    assert len(huge) > LONGEST_COMMIT
    stream = _startup() + _parse(huge) + _query("COMMIT")
    counted, largest_buffer = 0, 0
    for i in range(0, len(stream), 65536):
        counted += sniffer.feed(stream[i : i + 65536])
        largest_buffer = max(largest_buffer, len(sniffer._buf))
    assert counted == 1
    assert largest_buffer <= 5
    assert not sniffer.lost
