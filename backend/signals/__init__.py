"""Signals: the shared reads, with generated signals recorded in PostgreSQL."""
