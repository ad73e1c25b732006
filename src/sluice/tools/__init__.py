"""Tools beside the core: the demo, the benchmark, the checker, the load sender, synthetic
events and the DLQ operations behind ``sluice dlq``. They use the runtime and the sources;
nothing in the core imports them."""
