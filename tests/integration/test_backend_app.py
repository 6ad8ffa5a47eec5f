"""The production app built by `backend.app.create_app`, in process on a real PostgreSQL and Redis:
error reports to Sentry (through a local transport, no network), docs headers, settings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from backend.settings import Settings, SettingsError
from tests.backend.processes import backend_env

# Runs in its own interpreter: Sentry's SDK patches Litestar process-wide once initialised.
SENTRY_SCRIPT = textwrap.dedent(
    """
    import json

    import sentry_sdk
    from litestar.testing import TestClient
    from sentry_sdk.transport import Transport

    from backend.app import create_app
    from backend.observability import init_sentry
    from backend.settings import Settings
    from contract.errors import DependencyDown

    captured = []


    class LocalTransport(Transport):
        def capture_envelope(self, envelope):
            event = envelope.get_event()
            if event is not None:
                captured.append(event)


    settings = Settings.from_env()
    assert init_sentry(settings, transport=LocalTransport())  # before the app is built
    app = create_app(settings)
    reads = app.state.production.reads


    async def bug():
        raise RuntimeError("a bug for Sentry")


    async def down(limit):
        raise DependencyDown("database (PostgreSQL)")


    reads.symbols = bug
    reads.opportunities = down
    with TestClient(app) as client:
        statuses = [
            client.get("/api/v1/symbols").status_code,
            client.get("/api/v1/market/opportunities").status_code,
            client.get("/api/v1/market-data/NOPE").status_code,
        ]
    sentry_sdk.flush()
    print(json.dumps({
        "statuses": statuses,
        "events": [
            {
                "types": [v["type"] for v in e.get("exception", {}).get("values", [])],
                "message": str(e.get("exception", {}).get("values", [{}])[-1].get("value")),
                "environment": e.get("environment"),
            }
            for e in captured
        ],
    }))
    """
)


def test_a_bug_reaches_sentry_through_a_local_transport(database_url: str, redis_url: str) -> None:
    env = backend_env(
        database_url,
        redis_url,
        SENTRY_DSN="https://public@sentry.invalid/1",
        SENTRY_ENVIRONMENT="tests",
        QUOTE_FEED="off",
    )
    ran = subprocess.run(
        [sys.executable, "-c", SENTRY_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [500, 503, 404]
    bugs = [e for e in result["events"] if "RuntimeError" in e["types"]]
    assert bugs, f"no RuntimeError event among {result['events']}"
    assert bugs[0]["message"] == "a bug for Sentry"
    assert bugs[0]["environment"] == "tests"
    reported = [t for e in result["events"] for t in e["types"]]
    assert "DependencyDown" not in reported, "a dependency outage is health's news, not a bug"
    assert "NotFound" not in reported


def test_settings_read_every_documented_variable() -> None:
    env = backend_env(
        "postgres://user:secret@db.example:5432/prod",
        "redis://cache.example:6379/2",
        RATE_LIMIT_PER_MINUTE="900",
        LOGIN_LIMIT_PER_ACCOUNT="7",
        LOGIN_LIMIT_PER_ADDRESS="70",
        TRUSTED_PROXIES="10.0.0.1, ::1",
        CORS_ORIGINS="https://app.example, http://localhost:3000",
        PROD_PORT="9002",
        PROD_ADMIN_PORT="9012",
        PROD_WORKERS="4",
        QUOTE_FEED="off",
        WS_MAX_SUBSCRIPTIONS="40",
        FAULT_LATENCY_MS="25",
    )
    settings = Settings.from_env(env)
    assert settings.database_url == "postgresql+asyncpg://user:secret@db.example:5432/prod"
    assert settings.redis_url == "redis://cache.example:6379/2"
    assert (settings.rate_limit_per_minute, settings.login_limit_per_account) == (900, 7)
    assert settings.login_limit_per_address == 70
    assert settings.trusted_proxies == ("10.0.0.1", "::1")
    assert settings.cors_origins == ("https://app.example", "http://localhost:3000")
    assert (settings.port, settings.admin_port, settings.workers) == (9002, 9012, 4)
    assert settings.quote_feed is False
    assert settings.ws_max_subscriptions == 40
    assert settings.faults.latency_ms == 25


def test_a_bad_database_url_is_named_without_its_password() -> None:
    env = backend_env("mysql://user:hunter2@db/x", "redis://127.0.0.1:6379/1")
    with pytest.raises(SettingsError, match="DATABASE_URL") as caught:
        Settings.from_env(env)
    assert "hunter2" not in str(caught.value)
