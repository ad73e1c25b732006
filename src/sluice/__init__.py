"""Sluice: drain an Amazon SQS queue into a warehouse, nothing lost and nothing doubled."""

__version__ = "0.1.0"

__all__ = ["__version__"]
