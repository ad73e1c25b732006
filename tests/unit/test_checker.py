"""The total-queue checker must catch each kind of failure, and a stalled run."""

from __future__ import annotations

import orjson

from sluice.mapping import load_mapping
from sluice.tools.checker import Sent, check, key_function
from sluice.tools.synth import synthetic_stream

KEY = key_function(load_mapping(None, "t"))


def _world(n: int = 1200) -> tuple[list[Sent], dict[str, int], list[str]]:
    plan = list(synthetic_stream(n, malformed_ratio=0.05, duplicate_ratio=0.05, seed=3))
    sent = [Sent(m.body, m.valid) for m in plan]
    rows = {KEY(m.body): 1 for m in plan if m.valid}
    dlq = [m.body for m in plan if not m.valid]
    return sent, rows, dlq


def test_a_clean_run_passes() -> None:
    sent, rows, dlq = _world()
    report = check(sent, rows, dlq, 0, KEY)
    assert report.ok, report.summary()


def test_each_failure_kind_is_reported() -> None:
    sent, rows, dlq = _world()
    keys = sorted(rows)
    lost, doubled = keys[0], keys[1]
    del rows[lost]
    rows[doubled] = 2
    rows["f" * 64] = 1  # nobody sent this
    valid_body = next(s.body for s in sent if s.valid and KEY(s.body) == keys[2])
    dlq.append(valid_body)  # a valid message dead-lettered (and still loaded once)
    invalid_loaded = next(
        s.body for s in sent if not s.valid and s.body.startswith("{") and "x" * 300 in s.body
    )
    rows[KEY(invalid_loaded)] = 1
    report = check(sent, rows, dlq, 3, KEY)
    assert report.lost == (lost,)
    assert report.duplicated == {doubled: 2}
    assert report.unexpected == ("f" * 64,)
    assert len(report.misrouted) == 2
    assert report.stuck == 3
    assert not report.ok


def test_a_valid_message_only_in_the_dlq_is_misrouted_not_lost() -> None:
    sent, rows, dlq = _world()
    victim = sorted(rows)[5]
    body = next(s.body for s in sent if s.valid and KEY(s.body) == victim)
    del rows[victim]
    report = check(sent, rows, [*dlq, body], 0, KEY)
    assert report.lost == ()
    assert len(report.misrouted) == 1


def test_a_stalled_run_cannot_pass() -> None:
    body = orjson.dumps(
        {"appsflyer_id": "a", "event_name": "e", "event_time": "2026-01-01 00:00:00"}
    ).decode()
    report = check([Sent(body, True)], {KEY(body): 1}, [], 0, KEY, min_messages=1000)
    assert not report.ok
    assert "at least 1000" in report.summary()
