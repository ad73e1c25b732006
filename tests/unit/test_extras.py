"""A module that needs an extra turns the missing import into one ConfigError line."""

from __future__ import annotations

import importlib
import sys

import pytest

from sluice.errors import ConfigError


@pytest.mark.parametrize(
    ("blocked", "module", "line"),
    [
        ("duckdb", "sluice.sinks.duckdb", "SLUICE_SINK=duckdb needs the duckdb extra"),
        ("pyarrow", "sluice.sinks.duckdb", "SLUICE_SINK=duckdb needs the duckdb extra"),
        ("duckdb", "sluice.tools.demo", "`sluice demo` needs the duckdb extra"),
        ("matplotlib", "sluice.plan.charts", "`sluice simulate --out` needs the charts extra"),
    ],
)
def test_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, blocked: str, module: str, line: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ConfigError) as caught:
        importlib.import_module(module)
    extra = line.rsplit(" ", 2)[1]
    assert str(caught.value) == f"{line}: pip install 'sluice[{extra}]'"
    assert isinstance(caught.value.__cause__, ImportError)
