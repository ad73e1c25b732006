"""ENABLE_SQS_CONSUMER: the old deployment's spellings, and what a paused worker reports."""

from __future__ import annotations

import pytest

from sluice.config import load_settings
from sluice.errors import ConfigError
from sluice.runtime.paused import paused_metrics, paused_status


@pytest.mark.parametrize(
    ("spelling", "enabled"),
    [
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("0", False),
        (" off ", False),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("1", True),
    ],
)
def test_the_old_deployments_spellings_are_accepted(spelling: str, enabled: bool) -> None:
    env = {"WORKER_ID": "w", "ENABLE_SQS_CONSUMER": spelling}
    assert load_settings(env).enable_consumer is enabled


@pytest.mark.parametrize("spelling", ["2", "disabled", "fals", "-1"])
def test_anything_else_is_refused_naming_the_variable(spelling: str) -> None:
    with pytest.raises(ConfigError, match=r"^ENABLE_SQS_CONSUMER=.* must be true or false"):
        load_settings({"WORKER_ID": "w", "ENABLE_SQS_CONSUMER": spelling})


def test_the_status_document_and_metrics_say_disabled() -> None:
    settings = load_settings({"WORKER_ID": "paused-1", "ENABLE_SQS_CONSUMER": "false"})
    doc = paused_status(settings)
    assert doc["consumer"] == "disabled" and doc["supervisor"] is None
    assert "ENABLE_SQS_CONSUMER=false" in doc["note"]
    text = paused_metrics("paused-1").decode()
    assert 'sluice_consumer_enabled{worker="paused-1"} 0.0' in text
