"""Fixtures of the reliability drills: both backends as real servers (tests/security/servers.py),
`backend` to run a test against each, an account on each for the authenticated routes, and the
loader's database and CLI environment (tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import loader_db, loader_env
from tests.security.servers import Account, Server, both_backends, new_account

__all__ = ["loader_db", "loader_env"]


@pytest.fixture(scope="session")
def servers(postgres_server_url: str, redis_url: str) -> Iterator[dict[str, Server]]:
    with both_backends(postgres_server_url, redis_url, LOG_LEVEL="INFO") as started:
        yield started


@pytest.fixture(scope="session")
def accounts(servers: dict[str, Server]) -> dict[str, Account]:
    """One user per backend, for the routes that want a token."""
    return {name: new_account(server, "reliability") for name, server in servers.items()}


@pytest.fixture(params=["mock", "prod"])
def backend(request: pytest.FixtureRequest, servers: dict[str, Server]) -> Server:
    """Each backend in turn."""
    return servers[str(request.param)]


@pytest.fixture
def account(backend: Server, accounts: dict[str, Account]) -> Account:
    """The backend's user."""
    return accounts[backend.name]
