"""Outages of the production backend's dependencies, on real servers the test owns (an embedded
PostgreSQL and Redis it stops and starts again by pid, never the machine's own):

- Redis down: answers come from PostgreSQL, health says degraded, no 5xx, limits fail open.
- PostgreSQL down: health 503, cached reads still answer, uncached reads and writes 503 naming
  the database (no traceback); PostgreSQL back: the backend recovers without a restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.backend.processes import Running, backend, backend_env, fresh_connection_get
from tests.backend.stores import OwnServers, fill, own_servers

API = "/api/v1"


@pytest.fixture(scope="module")
def servers() -> Iterator[OwnServers]:
    with own_servers() as started:
        fill(started.postgres_url, ("AAPL", "SPY"))
        yield started


@pytest.fixture(scope="module")
def prod(servers: OwnServers) -> Iterator[Running]:
    env = backend_env(servers.postgres_url, servers.redis_url, DB_TIMEOUT_SECONDS="2")
    with backend(env, workers=2, admin=False) as running:
        yield running


def _eventually(check: Callable[[], bool], seconds: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.2)


def _health(prod: Running) -> httpx.Response:
    return fresh_connection_get(f"{prod.url}{API}/health")


def _token(prod: Running) -> str:
    email = f"outage-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=prod.url, timeout=10) as client:
        made = client.post(
            f"{API}/auth/register", json={"email": email, "password": "password-123", "name": "O"}
        )
        assert made.status_code == 201, made.text
        login = client.post(f"{API}/auth/login", json={"email": email, "password": "password-123"})
        assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def test_without_redis_answers_come_from_postgresql(servers: OwnServers, prod: Running) -> None:
    token = _token(prod)
    authed = {"Authorization": f"Bearer {token}"}
    servers.stop_redis()
    try:
        _eventually(
            lambda: _health(prod).json()["status"] == "degraded", what="health says degraded"
        )
        health = _health(prod)
        assert health.status_code == 200
        assert health.json()["checks"]["cache"] == "down"
        assert health.json()["checks"]["database"] == "ok"
        paths = [
            "/symbols",
            "/market-data/SPY",
            "/market-data/AAPL/historical?period=5d&interval=15m",  # never read: from PostgreSQL
            "/market-data/SPY/indicators?period=1mo&interval=1d",
            "/signals?limit=5",
        ]
        for path in paths:
            for _ in range(4):  # new connections: both workers
                answer = fresh_connection_get(f"{prod.url}{API}{path}")
                assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
        put = fresh_connection_get(f"{prod.url}{API}/watchlists", headers=authed)
        assert put.status_code == 200, "authenticated reads need only PostgreSQL"
        with httpx.Client(base_url=prod.url, timeout=10, headers=authed) as client:
            saved = client.put(f"{API}/watchlists/no-redis", json={"symbols": ["SPY"]})
            assert saved.status_code == 200, saved.text
        _eventually(
            lambda: "rate limits fail open" in prod.output(400),
            what="the limiter says it fails open",
        )
    finally:
        servers.start_redis()
    _eventually(lambda: _health(prod).json()["status"] == "ok", what="health ok again")


def test_without_postgresql_cached_reads_answer_and_the_rest_is_503(
    servers: OwnServers, prod: Running
) -> None:
    token = _token(prod)
    authed = {"Authorization": f"Bearer {token}"}
    cached = f"{prod.url}{API}/market-data/SPY/historical?period=1y&interval=1d"
    warm = [fresh_connection_get(cached) for _ in range(8)]
    assert {a.status_code for a in warm} == {200}
    assert len({a.headers["x-worker"] for a in warm}) == 2
    servers.stop_postgres()
    try:
        _eventually(lambda: _health(prod).status_code == 503, what="health answers 503")
        body = _health(prod).json()
        assert (body["status"], body["checks"]["database"]) == ("down", "down")
        for _ in range(6):
            answer = fresh_connection_get(cached)
            assert answer.status_code == 200, "a cached read answers without PostgreSQL"
            assert answer.json() == warm[0].json()
        uncached = fresh_connection_get(
            f"{prod.url}{API}/market-data/SPY/historical?period=1d&interval=5m"
        )
        with httpx.Client(base_url=prod.url, timeout=15, headers=authed) as client:
            writes = [
                client.put(f"{API}/watchlists/never", json={"symbols": ["SPY"]}),
                client.post(
                    f"{API}/auth/register",
                    json={
                        "email": "x-" + uuid.uuid4().hex + "@example.com",
                        "password": "p" * 12,
                        "name": "X",
                    },
                ),
                client.post(f"{API}/signals/generate", json={"symbol": "SPY", "timeframe": "1d"}),
            ]
        for answer in [uncached, *writes]:
            assert answer.status_code == 503, f"{answer.request.url}: {answer.text}"
            assert "database" in answer.json()["detail"]
            assert "Traceback" not in answer.text
            assert answer.headers["x-backend"] == "production"
    finally:
        servers.start_postgres()
    _eventually(lambda: _health(prod).status_code == 200, what="health ok without a restart")
    with httpx.Client(base_url=prod.url, timeout=10, headers=authed) as client:
        saved = client.put(f"{API}/watchlists/after", json={"symbols": ["AAPL"]})
        assert saved.status_code == 200, "writes work again: the pool reconnected"
        assert client.get(f"{API}/watchlists/never").status_code == 404, "nothing half-written"
    recovered = fresh_connection_get(
        f"{prod.url}{API}/market-data/SPY/historical?period=1d&interval=5m"
    )
    assert recovered.status_code == 200
