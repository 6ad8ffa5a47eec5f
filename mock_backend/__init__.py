"""The simple backend: the whole contract in memory, deterministic, instant to start."""
