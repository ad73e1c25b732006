"""Observability: counters, the 60-second stats line, logging set-up."""
