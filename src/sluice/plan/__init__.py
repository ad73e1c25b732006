"""Capacity arithmetic: pure functions over rates and backlogs (no I/O)."""
