"""`sluice demo`: run it with progress bars and print the reconciled report."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sluice.cli.progress import counting_progress, drain_progress
from sluice.local.emulator import running_emulator
from sluice.tools.demo import DemoReport, reason_label, run_demo


def run_and_report_demo(messages: int, database: Path, seed: int) -> bool:
    console = Console(stderr=True)
    out = Console()
    console.print(
        f"[bold]sluice demo[/]: {messages:,} synthetic AppsFlyer events "
        "-> local SQS emulator -> DuckDB"
    )
    with running_emulator() as emulator:
        console.print(f"SQS emulator (fauxqs) on {emulator.endpoint}")
        with (
            counting_progress(console, "sending ", messages) as sent,
            drain_progress(
                console, enabled=console.is_terminal, total=messages, label="draining"
            ) as drained,
        ):
            report = asyncio.run(
                run_demo(
                    emulator.endpoint,
                    messages,
                    database,
                    on_sent=sent,
                    on_progress=drained,
                    seed=seed,
                )
            )
    print_report(out, report)
    return not report.problems


def print_report(out: Console, r: DemoReport) -> None:
    table = Table(title="What happened", show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("expected", justify="right")
    table.add_row("messages sent", f"{r.sent:,}", "")
    table.add_row("rows loaded (in the table)", f"{r.rows_in_table:,}", f"{r.expected.rows:,}")
    table.add_row("duplicates absorbed", f"{r.duplicates_absorbed:,}", f"{r.expected.duplicates:,}")
    for reason in sorted(set(r.dead_letters_in_dlq) | set(r.expected.dead_letters)):
        table.add_row(
            f"dead-lettered: {reason_label(reason)}",
            f"{r.dead_letters_in_dlq.get(reason, 0):,}",
            f"{r.expected.dead_letters.get(reason, 0):,}",
        )
    table.add_row("left in the queue", f"{r.left_in_queue:,}", "0")
    out.print(table)
    processed = r.rows_in_table + r.duplicates_absorbed + sum(r.dead_letters_in_dlq.values())
    out.print(
        f"send: {r.sent / max(r.send_seconds, 1e-9):,.0f} msg/s over {r.send_seconds:.1f} s; "
        f"drain: {processed / max(r.drain_seconds, 1e-9):,.0f} msg/s, "
        f"wall time {r.drain_seconds:.1f} s (one worker process)"
    )
    out.print(f"database: {r.database}")
    out.print(f"total-queue check: {r.check.summary()}")
    if r.problems:
        out.print("[bold red]DOES NOT RECONCILE[/]")
        for problem in r.problems:
            out.print(f"  - {problem}")
    else:
        out.print(
            "[bold green]reconciled[/]: every valid event loaded once, every malformed "
            "one in the DLQ with its reason, nothing left behind"
        )
