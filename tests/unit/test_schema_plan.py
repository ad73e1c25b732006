"""Adopting an existing table (init-db): the plan only adds, and says what it cannot do."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluice.convert import ColumnType
from sluice.mapping import DEDUPE_KEY, LOADED_AT, Column, TableMapping
from sluice.sinks.schema_plan import TableShape, plan_schema, unfilled_columns
from sluice.sinks.sql import DUCKDB, POSTGRES, REDSHIFT, column_type, schema_problems

MAPPING = TableMapping(
    "analytics.events",
    (
        Column("appsflyer_id", ColumnType.TEXT, ("appsflyer_id",), nullable=False, max_length=128),
        Column("event_time", ColumnType.TIMESTAMP, ("event_time",), nullable=False),
        Column("event_revenue", ColumnType.DECIMAL, ("event_revenue",)),
        Column("campaign", ColumnType.TEXT, ("campaign",)),
    ),
)
# What the old consumer's table held: two of the mapped columns, none of Sluice's own.
OLD_CONSUMER = {
    "appsflyer_id": ("character varying", False),
    "event_time": ("timestamp without time zone", True),
    "id": ("integer", False),
}


def test_redshift_golden_statements_for_the_old_consumers_table() -> None:
    mapping = MAPPING.with_text_limit(65535)
    plan = plan_schema(REDSHIFT, mapping, TableShape(OLD_CONSUMER, True, False))
    assert [c.sql for c in plan.changes] == [
        'ALTER TABLE "analytics"."events" ADD COLUMN "event_revenue" DECIMAL(20,6)',
        'ALTER TABLE "analytics"."events" ADD COLUMN "campaign" VARCHAR(65535)',
        'ALTER TABLE "analytics"."events" ADD COLUMN "dedupe_key" VARCHAR(64)',
        'ALTER TABLE "analytics"."events" ADD COLUMN "message_id" VARCHAR(128)',
        'ALTER TABLE "analytics"."events" ADD COLUMN "sent_at" TIMESTAMP',
        'ALTER TABLE "analytics"."events" ADD COLUMN "raw_event" SUPER',
        'ALTER TABLE "analytics"."events" ADD COLUMN "loaded_at" TIMESTAMP DEFAULT GETDATE()',
    ]  # no index: Redshift enforces no unique key; the merge's NOT EXISTS dedupes
    assert plan.conflicts == ()
    assert any("loaded twice" in n for n in plan.notes)  # old rows have no dedupe_key
    assert any(n.startswith("column message_id is required") for n in plan.notes)


def test_redshift_never_adds_not_null_without_a_default_even_to_an_empty_table() -> None:
    plan = plan_schema(REDSHIFT, MAPPING, TableShape(OLD_CONSUMER, False, False))
    added = [c.sql for c in plan.changes if LOADED_AT not in c.sql]
    assert added and not any("NOT NULL" in sql for sql in added)
    assert any("redshift adds a NOT NULL column only with a default" in n for n in plan.notes)


def test_postgres_empty_table_gets_not_null_and_the_unique_index() -> None:
    plan = plan_schema(POSTGRES, MAPPING, TableShape(OLD_CONSUMER, False, False))
    sql = [c.sql for c in plan.changes]
    assert 'ALTER TABLE "analytics"."events" ADD COLUMN "dedupe_key" VARCHAR(64) NOT NULL' in sql
    assert (
        sql[-1] == 'CREATE UNIQUE INDEX "events_dedupe_key" ON "analytics"."events" ("dedupe_key")'
    )
    assert plan.notes == ()  # nothing to say about rows that do not exist


def test_postgres_table_with_rows_gets_nullable_columns_and_says_why() -> None:
    plan = plan_schema(POSTGRES, MAPPING, TableShape(OLD_CONSUMER, True, False))
    added = [c.sql for c in plan.changes if c.sql.startswith("ALTER") and LOADED_AT not in c.sql]
    assert not any("NOT NULL" in sql for sql in added)
    assert (
        "column raw_event is required by the mapping but is added nullable (the table has rows "
        "and no default can supply their values): rows already there hold NULL, every row "
        "Sluice loads has a value"
    ) in plan.notes


def test_a_type_mismatch_is_one_line_naming_both_types_and_what_to_do() -> None:
    found = dict(OLD_CONSUMER, event_revenue=("text", True))
    plan = plan_schema(POSTGRES, MAPPING, TableShape(found, True, True))
    assert plan.conflicts == (
        "column event_revenue is text, the mapping wants decimal (DECIMAL(20,6)): change the "
        "mapping's type or migrate the column yourself (init-db never retypes)",
    )
    assert not any("event_revenue" in c.sql for c in plan.changes)


def test_a_not_null_column_sluice_does_not_fill_is_a_conflict() -> None:
    unfilled = unfilled_columns(MAPPING, ["id", "appsflyer_id", "legacy_source", LOADED_AT])
    assert unfilled == ("id", "legacy_source")
    plan = plan_schema(POSTGRES, MAPPING, TableShape(OLD_CONSUMER, True, False, unfilled))
    assert plan.conflicts[0] == (
        "column id is NOT NULL with no default and the mapping does not fill it: every insert "
        "would fail; give it a default or make it nullable yourself"
    )


def test_a_table_sluice_made_matches() -> None:
    for dialect in (POSTGRES, DUCKDB, REDSHIFT):
        found = {
            c.name: (dialect.reported_types[c.type][0], c.nullable) for c in MAPPING.load_columns
        }
        found[LOADED_AT] = ("TIMESTAMP", False)
        assert plan_schema(dialect, MAPPING, TableShape(found, True, True)).matches


def test_a_nullable_dedupe_key_passes_the_check() -> None:
    # An adopted table's dedupe_key holds NULL in the old rows; the worker writes one always.
    found = {c.name: (POSTGRES.reported_types[c.type][0], True) for c in MAPPING.load_columns}
    found[LOADED_AT] = ("timestamp without time zone", True)
    assert schema_problems(POSTGRES, MAPPING, found) == []


@given(
    present=st.sets(st.sampled_from([c.name for c in MAPPING.load_columns] + [LOADED_AT])),
    has_rows=st.booleans(),
    has_unique=st.booleans(),
    dialect=st.sampled_from([POSTGRES, DUCKDB, REDSHIFT]),
)
def test_the_plan_only_adds_what_is_missing(
    present: set[str], has_rows: bool, has_unique: bool, dialect: object
) -> None:
    assert dialect in (POSTGRES, DUCKDB, REDSHIFT)
    d = POSTGRES if dialect is POSTGRES else DUCKDB if dialect is DUCKDB else REDSHIFT
    types = {c.name: column_type(d, c) for c in MAPPING.load_columns}
    found = {
        name: (d.reported_types[c.type][0], True)
        for c in MAPPING.load_columns
        if (name := c.name) in present
    }
    if LOADED_AT in present:
        found[LOADED_AT] = ("TIMESTAMP", True)
    plan = plan_schema(d, MAPPING, TableShape(found, has_rows, has_unique))
    assert plan.conflicts == ()
    added = [c.sql.split('ADD COLUMN "')[1].split('"')[0] for c in plan.changes if "ADD" in c.sql]
    assert sorted(added) == sorted(set(types) - present | ({LOADED_AT} - present))
    for change in plan.changes:
        upper = change.sql.upper()
        assert upper.startswith(("ALTER TABLE", "CREATE UNIQUE INDEX"))
        assert "DROP" not in upper and " TYPE " not in upper and "ALTER COLUMN" not in upper
    indexed = any(c.sql.startswith("CREATE UNIQUE INDEX") for c in plan.changes)
    assert indexed == (d.enforces_unique and not has_unique)
    if has_rows:  # nothing an old row cannot satisfy
        assert all("NOT NULL" not in c.sql or "DEFAULT" in c.sql for c in plan.changes)
    if DEDUPE_KEY not in present and has_rows:
        assert any("loaded twice" in n for n in plan.notes)
