"""Benchmarks run by `./start.sh bench`; each prints its figures and saves them as JSON."""
