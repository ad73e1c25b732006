"""`python -m sluice simulate` as an operator runs it: the ops-guide scenario, charts, JSON."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPS_GUIDE = ROOT / "scenarios" / "ops-guide.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def simulate(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", "simulate", *map(str, args)],
        cwd=ROOT,
        env=os.environ | {"COLUMNS": "200", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_ops_guide_scenario_writes_its_chart_page_and_summary(tmp_path: Path) -> None:
    done = simulate(OPS_GUIDE, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "never (within 30d 0h)" in done.stdout  # the guide's fleet
    assert "wrote" in done.stdout

    png = (tmp_path / "ops-guide.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 20_000  # three panels of lines, not an empty canvas
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1_000 and height >= 800

    page = (tmp_path / "ops-guide.html").read_text()
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert '<table id="summary">' in page
    for text in ("ops guide: 10-30 workers", "Sluice: 1-4 workers", "queue first empty after"):
        assert text in page
    assert "sluice simulate" in page

    document = json.loads((tmp_path / "ops-guide.json").read_text())
    guide, sluice_run = document["runs"]
    assert guide["summary"]["drain"] == "never"
    assert sluice_run["summary"]["drain"] == "drained"
    assert 700 <= sluice_run["summary"]["drained_at_s"] <= 900
    assert guide["policy"]["target_backlog_per_worker"] == 50_000
    assert not (tmp_path / "ops-guide-steps.csv").exists()


def test_json_summary_and_steps_csv(tmp_path: Path) -> None:
    done = simulate(OPS_GUIDE, "--json", "--out", tmp_path, "--steps")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [r["label"] for r in document["runs"]] == [
        "ops guide: 10-30 workers at ~0.5 msg/s",
        "Sluice: 1-4 workers at ~1,000 msg/s",
    ]
    summary = document["runs"][1]["summary"]
    assert summary["arrived"] == 18_000_000  # 30 days of 600,000
    assert summary["arrived"] + 2_800_000 == summary["processed"] + summary["final_backlog"]
    rows = (tmp_path / "ops-guide-steps.csv").read_text().splitlines()
    assert rows[0].startswith("run,time_s,arrived,processed,backlog")
    assert len(rows) == 1 + 2 * (30 * 24 * 60 + 1)


def test_compare_with_another_scenario_file(tmp_path: Path) -> None:
    first, other = (
        ROOT / "scenarios" / "daily-cycle.toml",
        ROOT / "scenarios" / "daily-cycle-calm.toml",
    )
    done = simulate(first, "--compare", other, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scale-in cooldown 30 min" in done.stdout
    assert "replaces the [compare] table" in done.stdout
    assert (tmp_path / "daily-cycle.png").read_bytes().startswith(PNG_MAGIC)


def test_a_wrong_key_stops_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('duration = "1d"\n[arrivals]\nrate = 5\n[policy]\nscale_in_coldown = "5m"\n')
    done = simulate(bad)
    assert done.returncode == 2
    assert "unknown key(s) scale_in_coldown" in done.stderr
    assert str(bad) in done.stderr
