"""Load tests (Locust) and benchmarks (`loadtests/bench/`) of the backends and the gateway."""
