"""Writes through the gateway, with real processes: the mock, the production backend (PostgreSQL
and Redis) and the gateway. A mirrorable write lands on both backends; a mirror prod cannot take
waits in the durable outbox, which holds the weight and drains in order once prod is back."""

from __future__ import annotations

import asyncio
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops import databases
from ops.gateway.admin import GatewayMetrics
from ops.gateway.differ import Answer, RequestCopy
from ops.gateway.routing import Routing, Upstream
from ops.gateway.writes import Outbox, is_mirrorable
from tests.backend.processes import Running, backend_env, start_backend
from tests.backend.stores import fill, fresh_database
from tests.gateway.processes import (
    ADMIN_TOKEN,
    AUTH,
    SECRET_KEY,
    GatewayFactory,
    Proc,
    set_mode,
    start_mock,
)

PASSWORD = "writes-password-1"
SYMBOLS = ("AAPL", "MSFT", "SPY")
WATCHLIST = "/api/v1/watchlists/{name}"
REGISTER = "/api/v1/auth/register"


@pytest.fixture(scope="module")
def prod_database(postgres_server_url: str) -> Iterator[str]:
    url, name = fresh_database(postgres_server_url, "cutover_writes")
    fill(url, SYMBOLS, intervals=("1d",))
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def prod_env(prod_database: str, redis_url: str) -> dict[str, str]:
    # The mock's secret and admin token: tokens work on both, as in a real cutover.
    return backend_env(prod_database, redis_url, SECRET_KEY=SECRET_KEY, ADMIN_TOKEN=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def prod(prod_env: dict[str, str]) -> Iterator[Running]:
    running = start_backend(prod_env, workers=1)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def mock() -> Iterator[Proc]:
    proc = start_mock()
    try:
        yield proc
    finally:
        proc.stop()


def register(client: httpx.Client, email: str) -> httpx.Response:
    return client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Writer"}
    )


def login(base: str, email: str) -> dict[str, str]:
    answer = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def outbox(gateway: Proc) -> dict[str, Any]:
    answer = httpx.get(f"{gateway.admin}/admin/outbox", headers=AUTH, timeout=5)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def a_user() -> str:
    return f"writer-{uuid.uuid4().hex[:10]}@example.com"


def test_mirrorable_writes_land_on_both_backends(
    mock: Proc, prod: Running, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(mock.url, prod.url)
    email = a_user()
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        created = register(client, email)
        assert created.status_code == 201, created.text
        assert created.headers["x-gateway-upstream"] == "mock"
        # Registered through the gateway, served by the mock: the password works on prod too.
        on_prod = login(prod.url, email)
        auth = login(gateway.url, email)
        put = client.put(
            "/api/v1/watchlists/tech", json={"symbols": ["msft", "AAPL"]}, headers=auth
        )
        assert put.status_code == 200, put.text
        client.put("/api/v1/watchlists/gone", json={"symbols": ["SPY"]}, headers=auth)
        assert client.delete("/api/v1/watchlists/gone", headers=auth).status_code == 204
        order = {
            "symbol": "SPY",
            "strategy": "sma_crossover",
            "start": "2024-01-02",
            "end": "2024-06-28",
        }
        with_id = client.post("/api/v1/backtests", json={**order, "id": "mirrored-1"}, headers=auth)
        assert with_id.status_code == 202, with_id.text
        without_id = client.post("/api/v1/backtests", json=order, headers=auth)
        assert without_id.status_code == 202, without_id.text

    tech = httpx.get(f"{prod.url}/api/v1/watchlists/tech", headers=on_prod, timeout=10)
    assert tech.status_code == 200
    assert tech.json()["symbols"] == ["MSFT", "AAPL"]
    gone = httpx.get(f"{prod.url}/api/v1/watchlists/gone", headers=on_prod, timeout=10)
    assert gone.status_code == 404
    listed = httpx.get(f"{prod.url}/api/v1/backtests", headers=on_prod, timeout=10).json()
    # The one with a client id is on prod under that id; the other has a mock-made id only.
    assert [b["id"] for b in listed["backtests"]] == ["mirrored-1"]

    box = outbox(gateway)
    assert (box["pending"], box["dead"], box["failed"]) == (0, 0, 0)
    assert box["writes"] == box["mirrored"] == 5  # register, 2 PUT, DELETE, backtest with id
    state = httpx.get(f"{gateway.admin}/admin/state", headers=AUTH, timeout=5).json()
    assert state["outbox"]["mirrored"] == 5
    metrics = httpx.get(f"{gateway.admin}/gateway/metrics", timeout=5).text
    assert 'gateway_writes_mirrored_total{target="prod"} 5.0' in metrics


def test_a_refused_write_is_not_mirrored_and_login_never_is(
    mock: Proc, prod: Running, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(mock.url, prod.url)
    email = a_user()
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        assert register(client, email).status_code == 201
        assert register(client, email).status_code == 409  # refused by the mock: not repeated
        auth = login(gateway.url, email)
        bad = client.put("/api/v1/watchlists/x", json={"symbols": ["NOPE!"]}, headers=auth)
        assert bad.status_code == 422
    box = outbox(gateway)
    assert (box["writes"], box["mirrored"], box["pending"]) == (1, 1, 0)


def wait_for(check: Any, seconds: float, what: str, seen: Any = None) -> None:
    """Poll `check` until true; else fail saying `what` and what `seen()` shows then."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            shown = seen() if seen is not None else ""
            raise AssertionError(f"{what} within {seconds} s {shown}")
        time.sleep(0.2)


def test_prod_down_writes_wait_in_the_outbox_hold_the_weight_and_drain_in_order(
    mock: Proc,
    prod: Running,
    prod_env: dict[str, str],
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    gateway = start_gateway(mock.url, prod.url)
    email, late = a_user(), a_user()
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        assert register(client, email).status_code == 201
        auth = login(gateway.url, email)
        port = int(prod.url.rsplit(":", 1)[1])
        prod.stop()
        first = client.put("/api/v1/watchlists/w", json={"symbols": ["SPY"]}, headers=auth)
        second = client.put(
            "/api/v1/watchlists/w", json={"symbols": ["AAPL", "MSFT"]}, headers=auth
        )
        for answer in (first, second):
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-gateway-upstream"] == "mock"
        assert register(client, late).status_code == 201

    box = outbox(gateway)
    assert box["pending"] == 3
    assert box["failed"] == 3
    assert [e["method"] for e in box["entries"]] == ["PUT", "PUT", "POST"]
    assert box["entries"][2]["body"] == "[redacted]"  # a password never shows
    files = sorted((tmp_path / "var" / "outbox").glob("*.json"))
    assert len(files) == 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    blocked = httpx.put(
        f"{gateway.admin}/admin/mode",
        json={"mode": "canary", "weight": 25},
        headers=AUTH,
        timeout=5,
    )
    assert blocked.status_code == 409
    assert "outbox holds 3 write(s)" in blocked.json()["detail"]
    # The operator may force it; sending clients back to the mock is never blocked.
    assert set_mode(gateway, mode="canary", weight=25, force=True)["weight"] == 25
    assert set_mode(gateway, mode="canary", weight=0)["weight"] == 0

    # The outbox survives a gateway restart.
    gateway.stop()
    gateway = start_gateway(mock.url, prod.url)
    assert outbox(gateway)["pending"] == 3

    back = start_backend(prod_env, workers=1, port=port)
    prod.process = back.process  # prod again, on its port: the module's fixture stops it
    wait_for(lambda: outbox(gateway)["pending"] == 0, 45, "no drain", lambda: outbox(gateway))
    on_prod = login(prod.url, email)
    w = httpx.get(f"{prod.url}/api/v1/watchlists/w", headers=on_prod, timeout=10)
    assert w.json()["symbols"] == ["AAPL", "MSFT"]  # the second PUT, replayed last
    login(prod.url, late)  # registered while prod was down
    assert set_mode(gateway, mode="canary", weight=25)["weight"] == 25
    metrics = httpx.get(f"{gateway.admin}/gateway/metrics", timeout=5).text
    assert 'gateway_outbox_pending{target="prod"} 0.0' in metrics
    assert 'gateway_outbox_retried_total{target="prod"}' in metrics


def test_shadow_mode_compares_user_state_reads(
    mock: Proc, prod: Running, start_gateway: GatewayFactory
) -> None:
    if prod.process.poll() is not None:
        pytest.skip("prod was stopped by an earlier failure")
    gateway = start_gateway(mock.url, prod.url)
    set_mode(gateway, mode="shadow", primary="mock")
    email = a_user()
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        assert register(client, email).status_code == 201
        auth = login(gateway.url, email)
        client.put("/api/v1/watchlists/core", json={"symbols": ["SPY"]}, headers=auth)
        for _ in range(10):
            assert client.get("/api/v1/watchlists", headers=auth).status_code == 200
            assert client.get("/api/v1/auth/me", headers=auth).status_code == 200

    def compared() -> dict[str, dict[str, Any]]:
        table = httpx.get(f"{gateway.admin}/admin/diffs?min_samples=5", headers=AUTH, timeout=5)
        return {row["route"]: row for row in table.json()["routes"]}

    wanted = ("/api/v1/watchlists", "/api/v1/auth/me")
    wait_for(
        lambda: all(compared().get(r, {}).get("compared", 0) >= 10 for r in wanted),
        15,
        "the shadow copies were not compared",
    )
    rows = compared()
    for route in wanted:
        assert rows[route]["differing"] == 0, rows[route]["fields"]


# --- the outbox's rules, in process (an upstream answering from a script) ----------------------


def copy(method: str, path: str, route: str, body: bytes = b"{}") -> RequestCopy:
    return RequestCopy(method, path, route, (("authorization", "Bearer t"),), body)


def test_the_outbox_replays_in_order_keeps_refusals_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    answers: list[int] = [503, 200, 409, 409, 401, 404]
    seen: list[str] = []

    async def forward(_target: Upstream, request: RequestCopy) -> Answer:
        seen.append(f"{request.method} {request.path}")
        return Answer(answers.pop(0), (), b'{"detail":"scripted"}')

    async def scenario() -> None:
        folder = tmp_path / "outbox"
        first = Outbox(folder, forward, GatewayMetrics(), first_delay=0.0)
        first.add(copy("PUT", "/w/a", WATCHLIST), "prod", "ConnectError")
        first.add(copy("PUT", "/w/b", WATCHLIST), "prod", "queued")
        first.add(copy("POST", "/register", REGISTER), "prod", "queued")
        first.add(copy("PUT", "/w/c", WATCHLIST), "prod", "queued")
        first.add(copy("DELETE", "/w/d", WATCHLIST), "prod", "queued")
        assert first.guard(Routing("direct", "mock", 0), Routing("canary", "mock", 5)) is not None
        assert first.guard(Routing("canary", "mock", 50), Routing("canary", "mock", 0)) is None
        # A new process finds the same five, in the same order.
        second = Outbox(folder, forward, GatewayMetrics(), first_delay=0.0)
        assert [e.path for e in second.queues["prod"]] == [
            "/w/a",
            "/w/b",
            "/register",
            "/w/c",
            "/w/d",
        ]
        await second.drain_once()  # 503: the head stays, nothing overtakes it
        assert seen == ["PUT /w/a"]
        assert second.pending() == 5
        await second.drain_once()  # 200, 409 twice (already done), 401 (dead), 404 on DELETE
        assert seen[1:] == ["PUT /w/a", "PUT /w/b", "POST /register", "PUT /w/c", "DELETE /w/d"]
        assert second.pending() == 0
        assert [(e.path, e.dead_reason) for e in second.dead] == [
            ("/w/c", 'HTTP 401: {"detail":"scripted"}')
        ]
        third = Outbox(folder, forward, GatewayMetrics())
        assert (third.pending(), len(third.dead)) == (0, 1)  # the refusal is kept on disk

    asyncio.run(scenario())


def test_which_writes_are_mirrored() -> None:
    assert is_mirrorable("PUT", WATCHLIST, b"{}")
    assert is_mirrorable("POST", REGISTER, b"{}")
    assert is_mirrorable("POST", "/api/v1/backtests", b'{"id": "mine-1", "symbol": "SPY"}')
    assert not is_mirrorable("POST", "/api/v1/backtests", b'{"symbol": "SPY"}')
    assert not is_mirrorable("POST", "/api/v1/auth/login", b"{}")
    assert not is_mirrorable("POST", "/api/v1/auth/refresh", b"{}")
