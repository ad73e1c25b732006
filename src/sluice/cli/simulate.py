"""`sluice simulate`: backlog, workers and message age over time for a scenario file.

The simulation is pure (``sluice.plan.simulate``); this module reads the scenario files,
prints the summary, and with ``--out`` writes the chart (PNG), a page embedding it (HTML),
the summary and scale events (JSON) and, asked, every step (CSV). matplotlib is imported only then.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sluice.cli.common import EXIT_CONFIG, fail
from sluice.errors import ConfigError
from sluice.plan.capacity import format_duration
from sluice.plan.scenario import DAY, Scenario, ScenarioError, load_scenario
from sluice.plan.simulate import Run, simulate_all

SCENARIO_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("simulate")
@click.argument("scenario_path", metavar="SCENARIO.toml", type=SCENARIO_PATH)
@click.option(
    "--compare",
    "compare_path",
    metavar="OTHER.toml",
    type=SCENARIO_PATH,
    help="Also run OTHER.toml's fleet (label, [workers], [policy], start-up, decision "
    "interval) on SCENARIO's arrivals, in place of SCENARIO's [compare] table.",
)
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write NAME.png (chart), NAME.html (chart + summary) and NAME.json (summary and "
    "scale events) here, NAME being the scenario's name.",
)
@click.option(
    "--steps",
    "with_steps",
    is_flag=True,
    help="With --out, also write NAME-steps.csv: every step of every run (large: 43,201 rows "
    "a run for 30 days of 60 s steps).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(
    scenario_path: Path,
    compare_path: Path | None,
    out_dir: Path | None,
    with_steps: bool,
    as_json: bool,
) -> None:
    """Simulate a backlog draining under the autoscaling policy the supervisor runs.

    SCENARIO.toml gives the horizon, arrivals (constant, daily cycle, bursts), each
    worker's rate distribution, start-up delay, decision interval and [policy]; an
    optional [compare] table (or --compare) runs a second fleet on the same arrivals.
    docs/simulate.md describes the format.
    """
    try:
        scenario, notes = _load(scenario_path, compare_path)
    except ScenarioError as exc:
        fail(str(exc), EXIT_CONFIG)
    if out_dir is not None:
        try:  # the charts extra: say it is missing before simulating, not after
            import sluice.plan.charts  # noqa: F401
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
    started = time.perf_counter()
    runs = simulate_all(scenario)
    elapsed = time.perf_counter() - started
    command = _command(scenario_path, compare_path, out_dir, with_steps)
    document = summary_document(scenario, runs, notes)
    written = []
    if out_dir is not None:
        written = _write_outputs(out_dir, scenario, runs, document, command, with_steps)
    if as_json:
        click.echo(json.dumps(document | {"written": [str(p) for p in written]}, indent=2))
        return
    _print(scenario, runs, notes, written, elapsed)


def _load(scenario_path: Path, compare_path: Path | None) -> tuple[Scenario, list[str]]:
    scenario = load_scenario(scenario_path)
    if compare_path is None:
        return scenario, []
    other = load_scenario(compare_path)
    fleet = other.fleet
    if fleet.label == scenario.fleet.label:
        fleet = replace(fleet, label=f"{fleet.label} ({compare_path.name})")
    notes = []
    if scenario.compare is not None:
        notes.append(f"--compare {compare_path} replaces the [compare] table of {scenario_path}")
    if _workload(other) != _workload(scenario):
        notes.append(
            f"{compare_path}'s arrivals, horizon, step and initial backlog are not used: "
            f"both fleets run on {scenario_path}'s"
        )
    return replace(scenario, compare=fleet), notes


def _workload(scenario: Scenario) -> tuple[object, ...]:
    return (
        scenario.arrivals,
        scenario.duration,
        scenario.step,
        scenario.initial_backlog,
        scenario.initial_backlog_age,
    )


def _command(
    scenario_path: Path, compare_path: Path | None, out_dir: Path | None, with_steps: bool
) -> str:
    argv = ["sluice", "simulate", str(scenario_path)]
    if compare_path is not None:
        argv += ["--compare", str(compare_path)]
    if out_dir is not None:
        argv += ["--out", str(out_dir)]
    if with_steps:
        argv.append("--steps")
    return shlex.join(argv)


def summary_rows(scenario: Scenario, runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """The summary as (figure, one cell per run): for the terminal table and the HTML page."""
    horizon = format_duration(scenario.duration)
    summaries = [r.summary for r in runs]

    def when(seconds: float | None) -> str:
        if not scenario.initial_backlog:
            return "- (no initial backlog)"
        return f"never (within {horizon})" if seconds is None else format_duration(seconds)

    def age(seconds: float | None) -> str:
        return "-" if seconds is None else format_duration(seconds)

    def span(low_high: tuple[int, int]) -> str:
        low, high = low_high
        return str(low) if low == high else f"{low}-{high}"

    return [
        ("queue first empty after", [when(s.drained_at) for s in summaries]),
        ("initial backlog processed by", [when(s.initial_cleared_at) for s in summaries]),
        ("peak backlog", [f"{s.peak_backlog:,}" for s in summaries]),
        ("max oldest-message age", [age(s.max_oldest_age) for s in summaries]),
        ("worker-hours", [f"{s.worker_hours:,.1f}" for s in summaries]),
        (
            "scale events (out / in)",
            [f"{s.scale_events:,} ({s.scale_outs:,} / {s.scale_ins:,})" for s in summaries],
        ),
        ("workers at the end", [str(s.final_workers) for s in summaries]),
        ("workers over the last day", [span(s.tail_workers) for s in summaries]),
        ("backlog at the end", [f"{s.final_backlog:,}" for s in summaries]),
        ("oldest age at the end", [age(s.final_oldest_age) for s in summaries]),
        ("arrived / processed", [f"{s.arrived:,} / {s.processed:,}" for s in summaries]),
    ]


def describe_inputs(scenario: Scenario, runs: Sequence[Run]) -> list[str]:
    """What the runs were given, one line each."""
    arrivals = scenario.arrivals
    lines = [
        f"horizon {format_duration(scenario.duration)}, step {scenario.step:g} s, "
        f"seed {scenario.seed}",
        f"initial backlog {scenario.initial_backlog:,}",
        f"arrivals {arrivals.per_second * DAY:,.0f}/day, peak/trough {arrivals.peak_to_trough:g}"
        f" (peak at {arrivals.peak_hour:g}h), {len(arrivals.bursts)} burst(s)",
    ]
    for run in runs:
        fleet, rates = run.fleet, run.fleet.rates
        lines.append(
            f"{fleet.label}: each worker {rates.distribution.value} mean {rates.mean:g} msg/s"
            f" sd {rates.sd:g}; start-up {fleet.startup_delay:g} s; decisions every"
            f" {fleet.decision_interval:g} s; {fleet.policy!r}"
        )
    return lines


def summary_document(
    scenario: Scenario, runs: Sequence[Run], notes: Sequence[str]
) -> dict[str, object]:
    """The JSON form: inputs, each run's summary and its scale events (times in seconds)."""
    return {
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "duration_s": scenario.duration,
            "step_s": scenario.step,
            "initial_backlog": scenario.initial_backlog,
            "seed": scenario.seed,
        },
        "runs": [
            {
                "label": run.fleet.label,
                "policy": asdict(run.fleet.policy),
                "worker_rate": {
                    "distribution": run.fleet.rates.distribution.value,
                    "mean": run.fleet.rates.mean,
                    "sd": run.fleet.rates.sd,
                },
                "startup_delay_s": run.fleet.startup_delay,
                "decision_interval_s": run.fleet.decision_interval,
                "summary": run.summary.as_dict(),
                "scale_events": [
                    {
                        "time_s": e.time,
                        "direction": e.direction.value,
                        "from": e.before,
                        "to": e.after,
                        "reason": e.reason,
                    }
                    for e in run.events
                ],
            }
            for run in runs
        ],
        "notes": list(notes),
    }


def steps_csv(runs: Sequence[Run]) -> str:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    header = ("run", "time_s", "arrived", "processed", "backlog", "running", "starting")
    out.writerow((*header, "oldest_age_s", "decision"))
    for run in runs:
        for s in run.steps:
            decision = (
                ""
                if s.decision is None
                else f"{s.decision.direction.value}:{s.decision.desired}:{s.decision.reason.value}"
            )
            age = "" if s.oldest_age is None else f"{s.oldest_age:g}"
            counts = (s.arrived, s.processed, s.backlog, s.running, s.starting)
            out.writerow((run.fleet.label, f"{s.time:g}", *counts, age, decision))
    return buffer.getvalue()


def _write_outputs(
    out_dir: Path,
    scenario: Scenario,
    runs: Sequence[Run],
    document: dict[str, object],
    command: str,
    with_steps: bool,
) -> list[Path]:
    from sluice.plan.charts import Page, render_html, render_png

    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(scenario, runs)
    notes = [str(n) for n in document["notes"]] if isinstance(document["notes"], list) else []
    page = Page(
        title=scenario.description or scenario.name,
        command=command,
        labels=[r.fleet.label for r in runs],
        rows=summary_rows(scenario, runs),
        inputs=describe_inputs(scenario, runs),
        notes=notes,
    )
    base = out_dir / scenario.name
    outputs = {
        base.with_suffix(".png"): png,
        base.with_suffix(".html"): render_html(page, png).encode(),
        base.with_suffix(".json"): json.dumps(document, indent=2).encode(),
    }
    if with_steps:
        outputs[out_dir / f"{scenario.name}-steps.csv"] = steps_csv(runs).encode()
    for path, data in outputs.items():
        path.write_bytes(data)
    return list(outputs)


def _print(
    scenario: Scenario,
    runs: Sequence[Run],
    notes: Sequence[str],
    written: Sequence[Path],
    elapsed: float,
) -> None:
    console = Console(highlight=False, markup=False)  # labels and notes may hold [brackets]
    table = Table(title=scenario.description or scenario.name, title_justify="left")
    table.add_column("")
    for run in runs:
        table.add_column(run.fleet.label, justify="right")
    for name, cells in summary_rows(scenario, runs):
        table.add_row(name, *cells)
    console.print(table)
    for line in describe_inputs(scenario, runs):
        console.print(f"  {line}", soft_wrap=True)
    for note in notes:
        console.print(f"note: {note}", soft_wrap=True)
    steps = len(runs[0].steps)
    console.print(f"simulated {len(runs)} run(s) x {steps:,} steps in {elapsed:.2f} s")
    for path in written:
        console.print(f"wrote {path}")
