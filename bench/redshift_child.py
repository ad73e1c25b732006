"""Benchmark child: `sluice ARGS` whose Redshift sink speaks PostgreSQL's dialect.

Everything else is the production code path (settings, Redshift flush defaults, the direct
runner, the insert path's statement plan, LOCK + NOT EXISTS merge); only the type names and
literal prefix come from sql.POSTGRES, so PostgreSQL can stand in for Redshift.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sluice.sinks.redshift.build as build
from sluice.cli import main
from sluice.sinks.sql import POSTGRES

build.build_redshift_sink = functools.partial(build.build_redshift_sink, dialect=POSTGRES)  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv = ["sluice", *sys.argv[1:]]
    main()
