"""Fixtures of the security drills: both backends as real servers, logging at DEBUG (the most a
log can say) to files the secrets test reads; `backend` runs a test against each of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.servers import Server, both_backends


@pytest.fixture(scope="session")
def servers(postgres_server_url: str, redis_url: str) -> Iterator[dict[str, Server]]:
    with both_backends(postgres_server_url, redis_url, LOG_LEVEL="DEBUG") as started:
        yield started


@pytest.fixture(params=["mock", "prod"])
def backend(request: pytest.FixtureRequest, servers: dict[str, Server]) -> Server:
    """Each backend in turn."""
    return servers[str(request.param)]
