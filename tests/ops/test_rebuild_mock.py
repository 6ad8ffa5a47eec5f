"""The rollback's rebuild, with real processes: users, watchlists and backtests written on the
production backend (PostgreSQL) appear on a freshly started, empty mock after `rebuild_mock`,
passwords and tokens included."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from ops import databases
from ops.records import RecordsError, rebuild_mock
from tests.backend.processes import Running, backend_env, start_backend, start_worker
from tests.backend.stores import fill, fresh_database
from tests.gateway.processes import ADMIN_TOKEN, AUTH, SECRET_KEY, Proc, start_mock

PASSWORD = "rebuild-password-1"
ORDER = {"symbol": "SPY", "strategy": "sma_crossover", "start": "2025-06-02", "end": "2026-11-20"}


@pytest.fixture(scope="module")
def prod_database(postgres_server_url: str) -> Iterator[str]:
    url, name = fresh_database(postgres_server_url, "cutover_rebuild")
    fill(url, ("AAPL", "MSFT", "SPY"), intervals=("1d",))
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def prod(prod_database: str, redis_url: str) -> Iterator[Running]:
    # The mock's secret: the same SECRET_KEY on both sides, as in a real cutover.
    env = backend_env(prod_database, redis_url, SECRET_KEY=SECRET_KEY, ADMIN_TOKEN=ADMIN_TOKEN)
    running = start_backend(env, workers=1)
    worker = start_worker(env)
    try:
        yield running
    finally:
        worker.stop()
        running.stop()


@pytest.fixture
def empty_mock() -> Iterator[Proc]:
    proc = start_mock()
    try:
        yield proc
    finally:
        proc.stop()


def tokens(base: str, email: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def make_user(prod: Running, lists: dict[str, list[str]]) -> str:
    email = f"rebuild-{uuid.uuid4().hex[:10]}@example.com"
    created = httpx.post(
        f"{prod.url}/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "name": "Rebuilt"},
        timeout=15,
    )
    assert created.status_code == 201, created.text
    auth = bearer(tokens(prod.url, email))
    for name, symbols in lists.items():
        put = httpx.put(
            f"{prod.url}/api/v1/watchlists/{name}", json={"symbols": symbols}, headers=auth
        )
        assert put.status_code == 200, put.text
    return email


def stored_counts(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        connection = await asyncpg.connect(databases.libpq_url(url))
        try:
            return {
                table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
                for table in ("users", "watchlists", "backtests")
            }
        finally:
            await connection.close()

    return asyncio.run(count())


def wait_done(base: str, auth: dict[str, str], backtest_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(f"{base}/api/v1/backtests/{backtest_id}", headers=auth, timeout=10)
        body: dict[str, Any] = answer.json()
        if body.get("status") == "done":
            return body
        assert time.monotonic() < deadline, f"backtest not done in 60 s: {body}"
        time.sleep(0.3)


def test_an_empty_mock_rebuilt_from_postgresql_serves_every_record(
    prod: Running, prod_database: str, empty_mock: Proc
) -> None:
    keeper = make_user(prod, {"tech": ["MSFT", "AAPL"], "index": ["SPY"]})
    other = make_user(prod, {"core": ["SPY", "AAPL"]})
    leaver = make_user(prod, {"temp": ["SPY"]})
    keeper_pair = tokens(prod.url, keeper)  # issued by prod before the rebuild
    auth = bearer(keeper_pair)
    submitted = httpx.post(
        f"{prod.url}/api/v1/backtests", json={**ORDER, "id": "kept-1"}, headers=auth, timeout=10
    )
    assert submitted.status_code == 202, submitted.text
    on_prod = wait_done(prod.url, auth, "kept-1")
    other_auth = bearer(tokens(prod.url, other))
    assert httpx.post(f"{prod.url}/api/v1/backtests", json=ORDER, headers=other_auth).is_success
    leaver_auth = bearer(tokens(prod.url, leaver))
    assert httpx.delete(f"{prod.url}/api/v1/auth/me", headers=leaver_auth).status_code == 204

    # The mock knows none of them yet.
    assert httpx.get(f"{empty_mock.url}/api/v1/auth/me", headers=auth).status_code == 401

    counts = asyncio.run(rebuild_mock(prod_database, empty_mock.admin, ADMIN_TOKEN))
    stored = stored_counts(prod_database)
    assert (counts.users, counts.watchlists, counts.backtests) == (
        stored["users"],
        stored["watchlists"],
        stored["backtests"],
    )
    assert counts.tombstones >= 1

    mock = empty_mock.url
    # A token prod issued before the rebuild works on the rebuilt mock, and so does a password.
    me = httpx.get(f"{mock}/api/v1/auth/me", headers=auth, timeout=10)
    assert me.status_code == 200
    assert me.json()["user"]["email"] == keeper
    fresh = bearer(tokens(mock, keeper))
    lists = httpx.get(f"{mock}/api/v1/watchlists", headers=fresh, timeout=10).json()
    assert {w["name"]: w["symbols"] for w in lists["watchlists"]} == {
        "index": ["SPY"],
        "tech": ["MSFT", "AAPL"],
    }
    kept = httpx.get(f"{mock}/api/v1/backtests/kept-1", headers=fresh, timeout=10).json()
    assert kept["status"] == "done"
    assert kept["result"] == on_prod["result"]
    assert kept["created_at"] == on_prod["created_at"]
    theirs = httpx.get(f"{mock}/api/v1/backtests", headers=bearer(tokens(mock, other))).json()
    assert len(theirs["backtests"]) == 1
    # A refresh token prod issued works once on the mock; a deleted user stays deleted.
    refreshed = httpx.post(
        f"{mock}/api/v1/auth/refresh", json={"refresh_token": keeper_pair["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    again = httpx.post(
        f"{mock}/api/v1/auth/refresh", json={"refresh_token": keeper_pair["refresh_token"]}
    )
    assert again.status_code == 401
    gone = httpx.post(
        f"{mock}/api/v1/auth/login", json={"email": leaver, "password": PASSWORD}, timeout=10
    )
    assert gone.status_code == 401
    # The demo user is still there (PostgreSQL's, same id).
    demo = {"email": "demo@example.com", "password": "demo-password-123"}
    assert httpx.post(f"{mock}/api/v1/auth/login", json=demo, timeout=10).status_code == 200


def test_a_bad_snapshot_is_refused_naming_the_field(empty_mock: Proc) -> None:
    url = f"{empty_mock.admin}/admin/records"
    orphan = {
        "users": [],
        "watchlists": [{"user_id": "nobody", "name": "x", "symbols": [], "updated_at": 0.0}],
        "backtests": [],
    }
    assert httpx.put(url, json=orphan, timeout=10).status_code == 401  # no admin token
    refused = httpx.put(url, json=orphan, headers=AUTH, timeout=10)
    assert refused.status_code == 400
    assert "watchlists[0].user_id" in refused.text
    malformed = httpx.put(url, json={"users": "all"}, headers=AUTH, timeout=10)
    assert malformed.status_code == 400
    assert "users" in malformed.text


def test_an_unreachable_mock_is_a_clear_error(prod_database: str) -> None:
    with pytest.raises(RecordsError, match="does not answer"):
        asyncio.run(rebuild_mock(prod_database, "http://127.0.0.1:9", ADMIN_TOKEN))
