"""Table mappings shipped with Sluice (TOML files read with importlib.resources)."""
