"""Warehouse sinks behind one protocol (``base``): PostgreSQL, DuckDB, Redshift (a package of
its own) and the memory twin; ``profiles`` describes what each warehouse allows and wants."""
