"""`sluice status`'s drain ETA: counters are sampled every 5 s, the queue depth read every
30 s; the ETA must come from the depth's own readings, never from a mix of the two windows."""

from __future__ import annotations

import pytest

from sluice.cli.status import status_view
from sluice.observe.rates import RateHistory, Sample
from sluice.plan.capacity import DrainVerdict, drain_eta

PROCESSING = 100.0  # messages/s taken off the queue
ARRIVAL = 40.0  # messages/s put on it
START = 100_000


def _history(until: float, read_every: float = 30.0, sample_every: float = 5.0) -> RateHistory:
    """What the supervisor records: a sample every 5 s carrying the latest depth reading."""
    history = RateHistory(horizon=300)
    t = 0.0
    read_at = 0.0
    while t <= until:
        if t - read_at >= read_every:
            read_at = t
        backlog = round(START - (PROCESSING - ARRIVAL) * read_at)
        history.add(Sample(t, PROCESSING * t, backlog, read_at))
        t += sample_every
    return history


def _eta(history: RateHistory, window: float = 300) -> tuple[DrainVerdict, float | None]:
    rates = history.rates(window)
    backlog = START - (PROCESSING - ARRIVAL) * 25  # whatever was read last; only the rate matters
    estimate = drain_eta(round(backlog), rates.processing, rates.arrival)
    return estimate.verdict, estimate.seconds


def test_the_first_thirty_seconds_say_measuring_not_never() -> None:
    # Before: one depth reading over 25 s of counters gave arrival == processing, so the ETA
    # read "never: arrivals keep up with processing".
    history = _history(until=25)
    rates = history.rates(300)
    assert rates.processing == pytest.approx(PROCESSING)
    assert rates.arrival is None
    estimate = drain_eta(START, rates.processing, rates.arrival)
    assert estimate.verdict is DrainVerdict.UNKNOWN
    assert estimate.text().startswith("measuring")


@pytest.mark.parametrize("until", [30, 35, 55, 60, 95, 180, 400])
def test_once_two_readings_exist_the_net_rate_is_the_queues_own(until: float) -> None:
    history = _history(until=until)
    rates = history.rates(300)
    assert rates.arrival is not None
    assert rates.processing - rates.arrival == pytest.approx(PROCESSING - ARRIVAL)
    verdict, seconds = _eta(history)
    assert verdict is DrainVerdict.CLEARS
    assert seconds == pytest.approx((START - 60 * 25) / 60)
    one_minute = history.rates(60)
    assert one_minute.processing - one_minute.arrival == pytest.approx(60)


def test_samples_without_a_read_time_keep_the_old_arithmetic() -> None:
    history = RateHistory(horizon=300)
    for t, processed, backlog in ((0, 0, 1000), (60, 600, 700), (120, 1200, 400)):
        history.add(Sample(t, processed, backlog))
    assert history.rates(60).arrival == pytest.approx(5)


def test_status_view_shows_measuring() -> None:
    from rich.console import Console

    doc = {
        "supervisor": {"pid": 1, "mode": "fixed", "pinned": None},
        "workers": {"desired": 1, "running": 1, "restarts": 0},
        "queue": {"visible": 10, "in_flight": 0, "delayed": 0, "dlq": None, "age": 1.0},
        "throughput": {"5m": {"processing": 5.0, "arrival": None, "span": 10.0}},
        "eta": {"verdict": "unknown", "seconds": None, "text": drain_eta(10, 5.0, None).text()},
    }
    console = Console(record=True, width=200)
    console.print(status_view(doc))
    text = console.export_text()
    assert "drain ETA" in text and "measuring (the queue depth has been read once" in text
