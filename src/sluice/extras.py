"""Optional dependencies (pyproject's extras) and the one line that names a missing one.

The image and a plain ``pip install sluice`` carry only what ``sluice run`` needs for Redshift
and PostgreSQL. DuckDB with Arrow (``sluice[duckdb]``) and Matplotlib (``sluice[charts]``)
are imported only by the modules that use them, each of which turns the ImportError into
this ConfigError so the CLI prints one line and exits with the configuration code. Arrow
alone (``sluice[parquet]``) reads Data Locker's Parquet objects; without it such an object
is dead-lettered with a detail naming the extra (a worker's settings cannot foresee it).
"""

from __future__ import annotations

from sluice.errors import ConfigError

DUCKDB = "duckdb"  # duckdb + pyarrow: the DuckDB sink, `sluice demo`, `sluice bench --local`
PARQUET = "parquet"  # pyarrow: Data Locker objects in Parquet
CHARTS = "charts"  # matplotlib: `sluice simulate --out`


def missing_extra(what: str, extra: str) -> ConfigError:
    """``what`` (a setting or a command) cannot run without ``extra``."""
    return ConfigError(f"{what} needs the {extra} extra: pip install 'sluice[{extra}]'")
