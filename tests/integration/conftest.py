"""Fixtures of the loader's integration tests (tests/integration/test_loader_*.py): the session's
database emptied of market data and load runs, the CLI pointed at it, SQL against it."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from ops import databases
from tests.conftest import Env, run_cli

# A load of a few symbols over a few years, in a subprocess, on a slow machine.
LOADER_CLI_SECONDS = 180


def sql(url: str, query: str, *args: Any) -> list[Any]:
    """Run one statement on the database of `url`; its rows."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(databases.libpq_url(url))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def wipe(url: str) -> None:
    """Empty the market data and the load runs (ids start at 1 again)."""
    sql(url, "TRUNCATE load_run_symbols, load_runs, indicators, bars RESTART IDENTITY")


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """`./start.sh ARGS` with the loader's time allowance."""
    return run_cli(env, *args, timeout=LOADER_CLI_SECONDS)


@pytest.fixture
def loader_db(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's database, wiped, as this process's DATABASE_URL (and the session's Redis
    as its REDIS_URL; the generator's defaults, whatever the shell says), for in-process loads."""
    wipe(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("MARKET_SEED", raising=False)
    monkeypatch.delenv("MARKET_ASOF", raising=False)
    return database_url


@pytest.fixture
def loader_env(cli_env: Env, loader_db: str, redis_url: str) -> Env:
    """The CLI's environment (tests/conftest.py `cli_env`) on the wiped database and Redis."""
    return cli_env | {"DATABASE_URL": loader_db, "REDIS_URL": redis_url}
