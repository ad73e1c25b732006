"""The worker's garbage-collector policy: a larger young generation, start-up frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sluice.runtime.collector import CollectorPolicy


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
def test_apply_raises_the_young_threshold_and_keeps_the_others() -> None:
    _, middle, old = gc.get_threshold()
    CollectorPolicy(young_threshold=12_345).apply()
    assert gc.get_threshold() == (12_345, middle, old)


@pytest.mark.usefixtures("restored_collector")
def test_apply_freezes_what_start_up_made() -> None:
    gc.unfreeze()
    CollectorPolicy().apply()
    assert gc.get_freeze_count() > 0
