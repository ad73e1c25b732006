"""Process-level wiring: one worker, its signals, its test-only fault points."""
