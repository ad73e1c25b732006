"""`sluice init-db`: create the table, or list what an existing one lacks and add it."""

from __future__ import annotations

from collections.abc import Callable

import click

from sluice.cli.common import EXIT_SCHEMA, chosen_sink, cli_context, fail, run_async
from sluice.cli.options import takes_settings
from sluice.runtime.worker import build_sink, sink_mapping
from sluice.sinks.base import Sink
from sluice.sinks.schema_plan import SchemaPlan


async def create_or_adopt(
    make_sink: Callable[[], Sink], *, apply: bool
) -> tuple[bool, SchemaPlan, bool]:
    """(created, the plan, applied). The table is checked whenever it should now match."""
    sink = make_sink()  # in here, so a missing driver extra is reported like any ConfigError
    try:
        await sink.open()
        created = await sink.create_table()
        plan = await sink.plan_schema()
        applying = apply and bool(plan.changes) and not plan.conflicts
        if applying:
            await sink.apply_schema(plan)
        if plan.matches or applying:
            await sink.check_schema()
        return created, plan, applying
    finally:
        await sink.close()


def report(table: str, sink: str, created: bool, plan: SchemaPlan, applied: bool) -> None:
    """The plan on stdout (it can be saved and reviewed); exit 3 while the table is not ready."""
    if created or plan.matches:
        done = "created" if created else "already exists and matches the mapping"
        click.echo(f"table {table} {done} ({sink})")
        return
    where = f"table {table} ({sink})"
    click.echo(f"{where} differs from the mapping:")
    for change in plan.changes:
        click.echo(f"  {'added' if applied else 'to add'}: {change.what}")
        click.echo(f"    {change.sql};")
    for conflict in plan.conflicts:
        click.echo(f"  conflict: {conflict}")
    for note in plan.notes:
        click.echo(f"  note: {note}")
    if plan.conflicts:
        fail(f"{where}: settle the conflicts above; nothing was changed", EXIT_SCHEMA)
    if not applied:
        fail(
            f"{where}: `sluice init-db --apply` makes these {len(plan.changes)} change(s) "
            "(it only adds: nothing is dropped or retyped)",
            EXIT_SCHEMA,
        )
    click.echo(f"{where} now matches the mapping ({len(plan.changes)} change(s) made)")


@takes_settings
@click.command("init-db")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the CREATE TABLE for the configured sink and exit; connect to nothing.",
)
@click.option(
    "--apply",
    "apply_changes",
    is_flag=True,
    help="Make the listed changes to an existing table: add missing columns and the unique "
    "index on dedupe_key. Nothing is ever dropped or retyped.",
)
@click.pass_context
def init_db(ctx: click.Context, print_only: bool, apply_changes: bool) -> None:
    """Create the target table from the mapping; on an existing table, list what it lacks
    and, with --apply, add it."""
    obj = cli_context(ctx)
    settings = obj.settings()
    kind = chosen_sink(settings)
    mapping = sink_mapping(settings)
    if print_only:
        from sluice.sinks.profiles import PROFILES
        from sluice.sinks.sql import create_table_sql

        ddl = create_table_sql(PROFILES[kind].dialect, mapping, settings.redshift.sort_key)
        click.echo(ddl + ";")
        return

    def make_sink() -> Sink:
        return build_sink(settings, mapping, credentials=obj.credentials())

    created, plan, applied = run_async(create_or_adopt(make_sink, apply=apply_changes))
    report(mapping.table, kind.value, created, plan, applied)
