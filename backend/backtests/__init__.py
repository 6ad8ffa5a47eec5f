"""Backtests on a job queue (SAQ on Redis) with the PostgreSQL row as the truth."""
