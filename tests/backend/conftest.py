"""Fixtures of the process-level tests: a database of the test's own, filled from market/, and a
production backend with two workers serving it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops import databases
from tests.backend.processes import Running, backend, backend_env
from tests.backend.stores import fill, fresh_database

SYMBOLS = ("AAPL", "MSFT", "SPY")


@pytest.fixture(scope="module")
def served_database(postgres_server_url: str) -> Iterator[str]:
    """A fresh database with three symbols loaded (daily and 5-minute bars)."""
    url, name = fresh_database(postgres_server_url)
    fill(url, SYMBOLS)
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def prod(served_database: str, redis_url: str) -> Iterator[Running]:
    """`python -m backend --workers 2` (with its admin app) over `served_database`."""
    with backend(backend_env(served_database, redis_url, RATE_LIMIT_PER_MINUTE="120")) as running:
        yield running
