"""The autoscaling policy (pure, fake clock), throughput windows and the drain ETA."""

from __future__ import annotations

import pytest

from sluice.config import load_settings
from sluice.observe.aggregate import ChildScrape, FleetFigures, merge
from sluice.observe.rates import RateHistory, ResettingCounters, Sample
from sluice.plan.capacity import DrainVerdict, drain_eta, format_duration
from sluice.runtime.fleet import child_environment
from sluice.scaling import (
    AutoscalePolicy,
    ScaleDirection,
    ScaleRange,
    ScaleReason,
    ScalingInputs,
    ScalingMemory,
)

FRESH = ScalingMemory()
POLICY = AutoscalePolicy(
    min_workers=1,
    max_workers=10,
    target_backlog_per_worker=1000,
    scale_out_cooldown=60,
    scale_in_cooldown=300,
    scale_out_age=600,
)


def decide(
    backlog: int,
    current: int,
    now: float,
    memory: ScalingMemory = FRESH,
    age: float | None = None,
    policy: AutoscalePolicy = POLICY,
):
    return policy.decide(ScalingInputs(backlog, age, current), memory, now)


@pytest.mark.parametrize(
    ("backlog", "current", "desired"),
    [(0, 1, 1), (1, 1, 1), (1000, 1, 1), (1001, 1, 2), (4500, 1, 5), (10**9, 1, 10)],
)
def test_desired_is_ceil_of_backlog_over_target_clamped(backlog: int, current: int, desired: int):
    decision, _ = decide(backlog, current, now=0)
    assert decision.desired == desired


def test_at_max_the_reason_says_so():
    decision, _ = decide(50_000, 10, now=0)
    assert decision.direction is ScaleDirection.HOLD
    assert decision.reason is ScaleReason.AT_LIMIT
    assert decision.wanted == 50


def test_scale_out_cooldown_blocks_a_second_scale_out_until_it_passes():
    first, memory = decide(3000, 1, now=0)
    assert (first.direction, first.desired) == (ScaleDirection.OUT, 3)
    held, memory = decide(6000, 3, now=59, memory=memory)
    assert (held.direction, held.reason) == (ScaleDirection.HOLD, ScaleReason.OUT_COOLDOWN)
    second, _ = decide(6000, 3, now=60, memory=memory)
    assert (second.direction, second.desired) == (ScaleDirection.OUT, 6)


def test_scale_in_waits_for_its_own_cooldown_after_any_change():
    _, memory = decide(5000, 1, now=0)  # out to 5 at t=0
    held, memory = decide(0, 5, now=299, memory=memory)
    assert held.reason is ScaleReason.IN_COOLDOWN
    down, memory = decide(0, 5, now=300, memory=memory)
    # Half the distance to the target at a time: 5 -> 3 -> 2 -> 1, a cooldown apart.
    assert (down.direction, down.desired, down.wanted) == (ScaleDirection.IN, 3, 0)
    assert memory.last_change == 300
    steps = []
    current, now = 3, 300.0
    while current > 1:
        now += 300
        step, memory = decide(0, current, now=now, memory=memory)
        steps.append(step.desired)
        current = step.desired
    assert steps == [2, 1]
    # Scaling out again right after a scale-in is not blocked: backlog must not wait.
    up, _ = decide(2500, 1, now=now + 1, memory=memory)
    assert (up.direction, up.desired) == (ScaleDirection.OUT, 3)


def test_old_messages_add_a_worker_even_under_the_backlog_target():
    decision, _ = decide(10, 2, now=0, age=601)
    assert (decision.direction, decision.desired) == (ScaleDirection.OUT, 3)
    assert decision.reason is ScaleReason.OLDEST_AGE
    # Hysteresis: under the SLO but over half of it, nobody is shed yet.
    settling, _ = decide(10, 2, now=0, age=599, memory=ScalingMemory(last_change=-1000))
    assert (settling.direction, settling.reason) == (
        ScaleDirection.HOLD,
        ScaleReason.AGE_BLOCKS_SCALE_IN,
    )
    calm, _ = decide(10, 2, now=0, age=299, memory=ScalingMemory(last_change=-1000))
    assert calm.direction is ScaleDirection.IN


def test_no_scale_in_while_messages_are_late():
    small = AutoscalePolicy(min_workers=1, max_workers=4, target_backlog_per_worker=1000)
    at_max, _ = decide(0, 4, now=10_000, age=700, policy=small)
    assert (at_max.direction, at_max.reason) == (ScaleDirection.HOLD, ScaleReason.AT_LIMIT)
    below, _ = decide(0, 3, now=10_000, age=700, policy=small)
    assert (below.direction, below.desired) == (ScaleDirection.OUT, 4)


def test_below_min_is_restored_at_once_despite_the_cooldown():
    memory = ScalingMemory(last_scale_out=0, last_change=0)
    decision, _ = decide(0, 0, now=1, memory=memory, policy=AutoscalePolicy(min_workers=2))
    assert (decision.direction, decision.desired) == (ScaleDirection.OUT, 2)
    assert decision.reason is ScaleReason.BELOW_MIN


def test_decision_describes_inputs_and_reason():
    decision, _ = decide(4500, 1, now=0, age=12.4)
    assert decision.describe() == {
        "direction": "out",
        "reason": "backlog",
        "current": 1,
        "desired": 5,
        "wanted": 5,
        "backlog": 4500,
        "oldest_age": 12,
    }


def test_scale_range_parses_and_refuses():
    assert ScaleRange.parse("2:8") == ScaleRange(2, 8)
    for bad in ("8:2", "x", "3", "0:0", "1:999"):
        with pytest.raises(ValueError, match="MIN:MAX"):
            ScaleRange.parse(bad)


def test_the_supervisor_builds_its_policy_from_settings():
    settings = load_settings(
        {
            "WORKER_ID": "w",
            "SLUICE_SINK": "postgres",
            "SLUICE_DATABASE_URL": "postgresql://h/db",
            "SLUICE_AUTOSCALE": "2:6",
            "SLUICE_TARGET_BACKLOG_PER_WORKER": "5000",
            "SLUICE_SCALE_OUT_COOLDOWN": "30",
            "SLUICE_SCALE_IN_COOLDOWN": "120",
            "SLUICE_SCALE_OUT_AGE": "900",
        }
    )
    assert settings.autoscale_policy == AutoscalePolicy(2, 6, 5000, 30, 120, 900)


def test_counters_survive_a_restart_and_windows_give_rates():
    counters = ResettingCounters()
    for source, value in (("a#1", 100), ("b#2", 50), ("a#1", 160), ("a#3", 20)):
        counters.observe(source, value)
    assert counters.total == 230
    history = RateHistory(horizon=300)
    for t, processed, backlog in ((0, 0, 1000), (60, 600, 700), (120, 1200, 400)):
        history.add(Sample(t, processed, backlog))
    one = history.rates(60)
    assert one.processing == pytest.approx(10)
    assert one.arrival == pytest.approx(5)  # 10/s out, backlog fell by 5/s
    assert history.rates(300).window == 120


def test_drain_eta_cases():
    assert drain_eta(0, None, None).verdict is DrainVerdict.DRAINED
    clears = drain_eta(2_800_000, 100.0, 6.944)
    assert clears.verdict is DrainVerdict.CLEARS
    assert clears.seconds == pytest.approx(2_800_000 / (100 - 6.944))
    never = drain_eta(10, 5.0, 7.0)
    assert never.verdict is DrainVerdict.NEVER and "keep up" in never.reason
    assert drain_eta(10, 0.0, 0.0).reason == "no messages are being processed"
    assert format_duration(30_090) == "8h 21m"
    assert format_duration(3 * 86_400 + 7200) == "3d 2h"


def test_children_metrics_merge_under_one_family_and_feed_the_fleet_figures():
    from prometheus_client.parser import text_string_to_metric_families

    def child(worker: str, deleted: int, age: float) -> ChildScrape:
        text = (
            "# TYPE sluice_messages_total counter\n"
            f'sluice_messages_total{{worker="{worker}",outcome="deleted"}} {deleted}\n'
            "# TYPE sluice_oldest_message_age_seconds gauge\n"
            f'sluice_oldest_message_age_seconds{{worker="{worker}"}} {age}\n'
        )
        return ChildScrape(worker, tuple(text_string_to_metric_families(text)))

    scrapes = [child("w-1", 10, 0.0), child("w-2", 32, 4.5)]
    merged = {family.name: family for family in merge(scrapes)}
    assert len(merged["sluice_messages"].samples) == 2
    figures = FleetFigures.of(scrapes)
    assert figures.processed == {"w-1": 10, "w-2": 32}
    assert figures.oldest_age == 4.5


def test_a_child_gets_every_setting_as_a_variable_and_its_own_identity():
    settings = load_settings(
        {"WORKER_ID": "host", "SLUICE_SINK": "postgres", "SLUICE_DATABASE_URL": "postgresql://h/d"},
        {"batch_max_rows": 123, "autoscale": "1:4"},
    )
    env = child_environment(settings, {"PATH": "/bin", "SLUICE_AUTOSCALE": "1:4"}, 3, 4567)
    assert env["WORKER_ID"] == "host-3"
    assert env["PORT"] == "4567"
    assert env["SLUICE_HTTP_HOST"] == "127.0.0.1"
    assert env["SLUICE_BATCH_MAX_ROWS"] == "123"  # a flag the child never saw
    assert "SLUICE_AUTOSCALE" not in env and env["SLUICE_PROCESSES"] == "1"
    assert env["PATH"] == "/bin"


def test_a_control_socket_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    import asyncio

    from aiohttp import web

    from sluice.errors import ConfigError
    from sluice.observe.http import HttpService

    folder = tmp_path / "ctl"
    folder.mkdir()
    monkeypatch.setattr("os.getuid", lambda: folder.stat().st_uid + 1)
    service = HttpService(web.Application())
    with pytest.raises(ConfigError, match="belongs to another user"):
        asyncio.run(service.start_unix(folder / "supervisor.sock"))
