"""The Done-when of the production backend: the contract suite, unchanged and with its golden
values, passes against `python -m backend` with two workers (and the backtest worker) on a real
PostgreSQL and Redis, after `./start.sh load-data` loaded the mock's seed and as-of date."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from market.calendar import DEFAULT_ASOF
from ops import databases
from ops.settings import PROJECT_ROOT
from tests.backend.processes import backend, backend_env, start_worker
from tests.backend.stores import fresh_database

# What the suite's own mock runs with (tests/contract/conftest.py), so the same cases apply.
SUITE_SECRET_KEY = "contract-suite-secret-key-not-for-production-0123456789abcdef012"
SUITE_SETTINGS = {
    "SECRET_KEY": SUITE_SECRET_KEY,
    "DEMO_PASSWORD": "demo-password-123",
    "MARKET_SEED": "42",
    "MARKET_ASOF": DEFAULT_ASOF.isoformat(),
    "QUOTE_FEED": "simulated",
    "RATE_LIMIT_PER_MINUTE": "600",
    "LOGIN_LIMIT_PER_ACCOUNT": "10",
    "LOGIN_LIMIT_PER_ADDRESS": "1000",
    "WS_MAX_SUBSCRIPTIONS": "40",
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def loaded_database(
    postgres_server_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database filled by `./start.sh load-data` with the mock's seed and as-of date."""
    url, name = fresh_database(postgres_server_url, "cutover_contract")
    home = tmp_path_factory.mktemp("load-data")
    env = backend_env(url, redis_url)
    env.update({"CUTOVER_VAR_DIR": str(home / "var"), "CUTOVER_ENV_FILE": str(home / ".env")})
    # The default window: the whole history the mock serves (from 2005-01-03).
    loaded = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "load-data",
            "--seed",
            "42",
            "--asof",
            DEFAULT_ASOF.isoformat(),
            "--json",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stdout[-2000:] + loaded.stderr[-2000:]
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_contract_suite_passes_against_production(loaded_database: str, redis_url: str) -> None:
    env = backend_env(loaded_database, redis_url, **SUITE_SETTINGS)
    worker = start_worker(env)
    try:
        with backend(env, workers=2) as prod:
            suite_env = {
                key: value for key, value in os.environ.items() if not key.startswith("CONTRACT_")
            }
            suite_env.update(
                {
                    "CONTRACT_BASE_URL": prod.url,
                    "CONTRACT_DEMO_PASSWORD": SUITE_SETTINGS["DEMO_PASSWORD"],
                    "CONTRACT_SECRET_KEY": SUITE_SECRET_KEY,
                }
            )
            suite = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "tests/contract",
                    "-q",
                    "-rfs",
                    "-p",
                    "no:cacheprovider",
                ],
                cwd=PROJECT_ROOT,
                env=suite_env,
                capture_output=True,
                text=True,
                timeout=1100,
                check=False,
            )
            report = suite.stdout[-6000:] + suite.stderr[-2000:]
            assert suite.returncode == 0, f"{report}\n{prod.output(80)}"
            assert "golden values need" not in suite.stdout, "the golden values were skipped"
            assert " passed" in suite.stdout
    finally:
        worker.stop()
