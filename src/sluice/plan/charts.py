"""Charts of simulated runs: a PNG of backlog, workers and oldest-message age, and an HTML page.

Only ``sluice simulate --out`` imports this module (matplotlib is slow to import and the
simulation itself needs none of it). It draws on a ``Figure`` with the Agg canvas directly,
so no pyplot state, no backend switch and no display are involved. Nothing here writes
files: the caller gets bytes and text.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.extras import CHARTS, missing_extra
from sluice.plan.scenario import DAY, Scenario
from sluice.plan.simulate import Run

try:  # an extra (pyproject.toml): only charts need it
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:
    raise missing_extra("`sluice simulate --out`", CHARTS) from exc


@dataclass(frozen=True)
class Page:
    """What the HTML page says besides the chart (the CLI builds it: it also prints it)."""

    title: str
    command: str
    labels: Sequence[str]  # one column per run
    rows: Sequence[tuple[str, Sequence[str]]]  # (figure, one cell per run)
    inputs: Sequence[str]
    notes: Sequence[str] = ()


_COLOURS = ("#c0392b", "#1f6fb2")  # first run red (the old way), second blue
_STYLES = ("-", "--")
_ZOOM_BELOW = 0.05  # a drain within this share of the horizon gets a zoomed column


def render_png(scenario: Scenario, runs: Sequence[Run]) -> bytes:
    """Three stacked panels (backlog, workers, oldest age) sharing time; all runs on each.

    When a run drains within a small part of the horizon (Sluice against the guide's fleet:
    minutes against weeks) its curve is a vertical line at zero on the full axes, so a second
    column zooms on the start, to a few times that drain.
    """
    zoom = zoom_window(scenario, runs)
    columns = 1 if zoom is None else 2
    figure = Figure(figsize=(11 if columns == 1 else 15, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    grid = figure.subplots(3, columns, sharex="col", squeeze=False)
    _draw_column([row[0] for row in grid], runs, scenario.duration, "the whole horizon")
    if zoom is not None:
        _draw_column([row[1] for row in grid], runs, zoom, "the start, zoomed")
    grid[0][0].legend(loc="upper right", fontsize="small")
    figure.suptitle(f"sluice simulate: {scenario.description or scenario.name}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def zoom_window(scenario: Scenario, runs: Sequence[Run]) -> float | None:
    """Seconds to zoom on, or None when every run's story is visible on the full axes."""
    limit = _ZOOM_BELOW * scenario.duration
    quick = [
        r.summary.drained_at
        for r in runs
        if r.summary.drained_at is not None and 0 < r.summary.drained_at < limit
    ]
    if not quick:
        return None
    return min(scenario.duration, max(3 * max(quick), 3_600.0, 10 * scenario.step))


def _unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * DAY:
        return DAY, "days"
    if seconds >= 3 * 3_600:
        return 3_600.0, "hours"
    return 60.0, "minutes"


def _draw_column(axes: list[Axes], runs: Sequence[Run], until: float, title: str) -> None:
    backlog_ax, workers_ax, age_ax = axes
    scale, unit = _unit(until)
    steps = [[s for s in run.steps if s.time <= until] for run in runs]
    max_age = max((s.oldest_age or 0.0) for column in steps for s in column)
    age_scale, age_unit = _unit(max_age)
    for index, (run, shown) in enumerate(zip(runs, steps, strict=True)):
        colour, style, label = _COLOURS[index % 2], _STYLES[index % 2], run.fleet.label
        # The first run on top: a flapping second run's band must not hide it.
        on_top = 3 - index
        times = [s.time / scale for s in shown]
        backlog = [s.backlog for s in shown]
        backlog_ax.plot(times, backlog, style, color=colour, zorder=on_top, label=label)
        workers = [s.workers for s in shown]
        workers_ax.step(times, workers, style, where="post", color=colour, zorder=on_top)
        ages = [(s.oldest_age or 0.0) / age_scale for s in shown]
        age_ax.plot(times, ages, style, color=colour, zorder=on_top)
        drained = run.summary.drained_at
        if drained is not None and 0 < drained <= until:  # 0: there was no initial backlog
            backlog_ax.axvline(drained / scale, color=colour, linestyle=":", linewidth=1)
    backlog_ax.set_title(title, fontsize="medium")
    _label(backlog_ax, "backlog (messages)", thousands=True)
    _label(workers_ax, "workers (incl. starting)")
    _label(age_ax, f"oldest message age ({age_unit})")
    age_ax.set_xlabel(f"time ({unit}); dotted: queue first empty")


def _label(ax: Axes, text: str, thousands: bool = False) -> None:
    ax.set_ylabel(text)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if thousands:
        ax.yaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")


def render_html(page: Page, png: bytes) -> str:
    """One self-contained page: the chart inlined as base64, the summary table, the inputs."""
    esc = html.escape
    heads = "".join(f"<th>{esc(label)}</th>" for label in page.labels)
    rows = "".join(
        f"<tr><th>{esc(name)}</th>{''.join(f'<td>{esc(c)}</td>' for c in cells)}</tr>"
        for name, cells in page.rows
    )
    inputs = "".join(f"<li>{esc(line)}</li>" for line in page.inputs)
    notes = page.notes
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice simulate: {esc(page.title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1150px; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 4px 10px; }}
td {{ text-align: right; }} tbody th {{ text-align: left; font-weight: normal; }}
code {{ background: #f4f4f4; padding: 2px 4px; }}
</style></head><body>
<h1>{esc(page.title)}</h1>
<p><code>{esc(page.command)}</code></p>
<img alt="backlog, workers and oldest-message age over time" style="max-width:100%"
 src="data:image/png;base64,{image}">
<h2>Summary</h2>
<table id="summary"><thead><tr><th></th>{heads}</tr></thead><tbody>{rows}</tbody></table>
<h2>Inputs</h2><ul>{inputs}</ul>
{f"<h2>Notes</h2><ul>{note_items}</ul>" if notes else ""}
</body></html>
"""
