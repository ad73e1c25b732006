"""The lean install: DuckDB, Arrow and Matplotlib are extras, and their absence is one line.

Each test runs the CLI in a fresh interpreter whose ``sys.modules`` maps the three packages
to ``None``, which makes any ``import`` of them (or of their submodules) raise
ModuleNotFoundError exactly as on an install without the extras.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import psycopg

from tests.support.worker import worker_env

REPO = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("duckdb", "pyarrow", "matplotlib")
# Blocks the extras, then runs the CLI as `python -m sluice` would.
WITHOUT_EXTRAS = (
    "import sys\n"
    f"sys.modules.update(dict.fromkeys({EXTRA_MODULES!r}))\n"
    "from sluice.cli import main\n"
    "sys.argv[0] = 'sluice'\n"
    "main()\n"
)


def lean_sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args],
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/000000000000/not-contacted",
        dlq_url=None,
        table="t_extras",
        sink="duckdb",
        duckdb_path=str(tmp_path / "never.duckdb"),
        extra=extra,
    )


def test_base_dependencies_leave_out_the_heavy_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for name in EXTRA_MODULES:
        assert name not in base
    extras = project["optional-dependencies"]
    assert {d.split(">")[0] for d in extras["duckdb"]} == {"duckdb", "pyarrow"}
    assert {d.split(">")[0] for d in extras["charts"]} == {"matplotlib"}
    assert {d.split(">")[0] for d in extras["parquet"]} == {"pyarrow"}
    assert "sluice[duckdb,charts,parquet]" in extras["dev"]  # make test / make demo: all
    lock = (REPO / "requirements.lock").read_text()
    for name in EXTRA_MODULES:
        assert f"\n{name}==" in lock


def test_every_command_loads_without_the_extras(tmp_path: Path) -> None:
    done = lean_sluice(_env(tmp_path), "--help")
    assert done.returncode == 0, done.stderr
    for command in ("run", "init-db", "status", "dlq", "plan", "bench", "simulate", "demo"):
        assert command in done.stdout


def test_init_db_on_postgres_needs_no_extra(tmp_path: Path, pg_dsn: str, table_name: str) -> None:
    env = _env(tmp_path, SLUICE_SINK="postgres", SLUICE_DATABASE_URL=pg_dsn)
    env["REDSHIFT_TABLE_NAME"] = table_name
    done = lean_sluice(env, "init-db")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{table_name}"').fetchone() == (0,)


def test_duckdb_sink_without_the_extra_names_it(tmp_path: Path) -> None:
    done = lean_sluice(_env(tmp_path), "init-db")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "sluice: error: SLUICE_SINK=duckdb needs the duckdb extra: pip install 'sluice[duckdb]'"
    ]
    assert not (tmp_path / "never.duckdb").exists()


def test_demo_without_the_extra_names_it(tmp_path: Path) -> None:
    done = lean_sluice(_env(tmp_path), "demo", "--database", str(tmp_path / "d.duckdb"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "sluice: error: `sluice demo` needs the duckdb extra: pip install 'sluice[duckdb]'"
    ]


def test_simulate_charts_without_the_extra_names_it(tmp_path: Path) -> None:
    scenario = REPO / "scenarios" / "daily-cycle-calm.toml"
    out = tmp_path / "charts"
    done = lean_sluice(_env(tmp_path), "simulate", str(scenario), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "sluice: error: `sluice simulate --out` needs the charts extra: "
        "pip install 'sluice[charts]'"
    ]
    assert not out.exists()
    # without --out the simulation needs no chart library
    done = lean_sluice(_env(tmp_path), "simulate", str(scenario), "--json")
    assert done.returncode == 0, done.stderr
