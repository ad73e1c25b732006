"""Progress bars for long commands (shown on a terminal only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sluice.observe.stats import WorkerCounters


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


@contextmanager
def counting_progress(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    with _progress(console, console.is_terminal) as progress:
        task = progress.add_task(label, total=total, detail="")
        yield lambda n: progress.advance(task, n)


@contextmanager
def drain_progress(
    console: Console, *, enabled: bool, total: int | None = None, label: str = "draining"
) -> Iterator[Callable[[WorkerCounters], None]]:
    with _progress(console, enabled) as progress:
        task = progress.add_task(label, total=total, detail="")

        def update(c: WorkerCounters) -> None:
            progress.update(
                task,
                completed=c.processed + c.failed + c.ignored,
                detail=f"rows {c.inserted}  dup {c.duplicates}  dlq {c.failed}",
            )

        yield update
