"""The configuration reference must name every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from sluice.config import SPECS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [s.env for s in SPECS if f"`{s.env}`" not in text or f"`{s.flag}`" not in text]
    assert missing == []
