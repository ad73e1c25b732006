"""Warehouse sinks: PostgreSQL, DuckDB (and Redshift later), behind one protocol."""
