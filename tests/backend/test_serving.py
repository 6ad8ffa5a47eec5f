"""The production backend as it runs: `python -m backend` with two worker processes on a real
PostgreSQL and Redis. Cross-worker behaviour is proven by the X-Worker header of each answer:
a per-user limit, the metrics and run-time faults hold for both workers at once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.backend.processes import (
    ADMIN_TOKEN,
    DEMO_PASSWORD,
    FRESH,
    Running,
    backend_env,
    fresh_connection_get,
    start_backend,
)

API = "/api/v1"
LIMIT = 120  # RATE_LIMIT_PER_MINUTE of the module's server (see conftest)


def _address() -> dict[str, str]:
    """A client address of the test's own (the server trusts X-Forwarded-For from loopback), so
    that each test has its own per-address allowance."""
    return {"X-Forwarded-For": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"}


def _eventually(check: Callable[[], bool], seconds: float = 8.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.2)


def _login(prod: Running) -> str:
    email = f"serving-{uuid.uuid4().hex[:12]}@example.com"
    headers = _address()
    with httpx.Client(base_url=prod.url, timeout=10, headers=headers) as client:
        created = client.post(
            f"{API}/auth/register",
            json={"email": email, "password": "password-123", "name": "Serving"},
        )
        assert created.status_code == 201, created.text
        login = client.post(f"{API}/auth/login", json={"email": email, "password": "password-123"})
        assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def _burst(url: str, count: int, headers: dict[str, str]) -> list[httpx.Response]:
    """`count` GETs from 16 threads, each on a new connection (any worker may take it)."""
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda _: fresh_connection_get(url, headers=headers), range(count)))


def test_answers_come_from_two_workers_with_the_contracts_headers(prod: Running) -> None:
    answers = _burst(f"{prod.url}{API}/symbols", 30, {**_address(), "X-Request-ID": "req-42"})
    assert {a.status_code for a in answers} == {200}
    workers = {a.headers["x-worker"] for a in answers}
    assert len(workers) == 2, f"expected both workers to answer, saw {workers}"
    first = answers[0]
    assert first.headers["x-backend"] == "production"
    assert first.headers["x-request-id"] == "req-42"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["x-frame-options"] == "DENY"
    assert first.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in first.headers["content-security-policy"]
    assert "server" not in first.headers, "the server does not advertise itself"
    new_id = fresh_connection_get(f"{prod.url}{API}/symbols", headers=_address())
    assert re.fullmatch(r"[0-9a-f]{32}", new_id.headers["x-request-id"])


def test_errors_keep_the_contracts_shape(prod: Running) -> None:
    headers = _address()
    with httpx.Client(base_url=prod.url, timeout=10, headers=headers) as client:
        too_big = client.post(
            f"{API}/market-data/quotes",
            content=b'{"symbols": ["' + b"A" * (1024 * 1024 + 10) + b'"]}',
            headers={"content-type": "application/json"},
        )
        assert too_big.status_code == 413
        assert too_big.headers["x-backend"] == "production"
        unknown = client.get(f"{API}/market-data/NOPE")
        assert unknown.status_code == 404
        assert set(unknown.json()) == {"status_code", "detail"}
        wrong = client.delete(f"{API}/symbols")
        assert wrong.status_code == 405
        assert client.get(f"{API}/watchlists").status_code == 401
        page = client.get("/schema")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "'unsafe-inline'" in page.headers["content-security-policy"], "the docs UI loads"
        document = client.get("/schema/openapi.json")
        assert "default-src 'none'" in document.headers["content-security-policy"]


def test_a_per_user_limit_holds_across_both_workers(prod: Running) -> None:
    token = _login(prod)  # a fresh user: their minute starts with their first request
    answers = _burst(
        f"{prod.url}{API}/symbols", 3 * LIMIT, {"Authorization": f"Bearer {token}", **_address()}
    )
    allowed = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    assert len(allowed) + len(limited) == len(answers), {a.status_code for a in answers}
    workers = {a.headers["x-worker"] for a in answers}
    assert len(workers) == 2, f"both workers must have answered, saw {workers}"
    assert {a.headers["x-worker"] for a in allowed} == workers
    assert len(allowed) == LIMIT, "the per-user limit holds across the two workers, exactly"
    remaining = sorted(int(a.headers["ratelimit-remaining"]) for a in allowed)
    assert remaining == list(range(LIMIT)), "each count handed out once (atomic in Redis)"
    assert all(a.headers["ratelimit-limit"] == str(LIMIT) for a in answers)
    assert all(0 < int(a.headers["retry-after"]) <= 60 for a in limited)
    # Another caller is not limited by this one.
    assert fresh_connection_get(f"{prod.url}{API}/symbols", headers=_address()).status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_sum_every_worker_and_use_route_templates(prod: Running) -> None:
    headers = _address()
    answers = _burst(f"{prod.url}{API}/market-data/MSFT", 20, headers)
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers["x-worker"] for a in answers}) == 2
    scrapes = _burst(f"{prod.url}/metrics", 12, {})
    assert len({s.headers["x-worker"] for s in scrapes}) == 2, "both workers answered /metrics"
    template = "/api/v1/market-data/{symbol}"
    counts = {_metric(s.text, "litestar_requests_total", path=template) for s in scrapes}
    assert len(counts) == 1, f"every worker reports the same sums: {counts}"
    assert counts.pop() >= 20
    text = scrapes[0].text
    assert "/api/v1/market-data/MSFT" not in text, "route templates, not raw paths"
    for name in (
        "cutover_cache_hits_total",
        "cutover_cache_misses_total",
        "cutover_feed_lag_seconds",
        "cutover_backtest_queue_depth",
    ):
        assert name in text, name
    assert _metric(text, "cutover_cache_hits_total", layer="process") > 0


def _admin(prod: Running, **faults: object) -> None:
    assert prod.admin_url is not None
    answer = httpx.put(
        f"{prod.admin_url}/admin/faults",
        json=faults,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def _refused(url: str) -> bool:
    try:
        fresh_connection_get(url)
    except httpx.ConnectError:
        return True
    return False


def test_run_time_faults_reach_every_worker(prod: Running) -> None:
    assert prod.admin_url is not None
    assert httpx.get(f"{prod.admin_url}/admin/faults", timeout=5).status_code == 401
    url = f"{prod.url}{API}/market-data/SPY"
    try:
        _admin(prod, latency_ms=400)

        def slow_everywhere() -> bool:
            started = time.monotonic()
            answers = _burst(url, 8, _address())
            took = time.monotonic() - started
            workers = {a.headers["x-worker"] for a in answers}
            return (
                len(workers) == 2
                and took >= 0.4
                and all(a.elapsed.total_seconds() >= 0.39 for a in answers)
            )

        _eventually(slow_everywhere, what="both workers add 400 ms")
        _admin(prod, latency_ms=0, error_rate=1.0)

        def failing_everywhere() -> bool:
            answers = _burst(url, 12, _address())
            return len({a.headers["x-worker"] for a in answers}) == 2 and all(
                a.status_code == 500 and a.headers["x-backend"] == "production" for a in answers
            )

        _eventually(failing_everywhere, what="both workers inject 500s")
        _admin(prod, error_rate=0.0, drift="rename_price")

        def drifted_everywhere() -> bool:
            answers = _burst(url, 12, _address())
            return len({a.headers["x-worker"] for a in answers}) == 2 and all(
                "last_price" in a.json() and "price" not in a.json() for a in answers
            )

        _eventually(drifted_everywhere, what="both workers rename price")
        _admin(prod, drift="", refuse=True)
        _eventually(
            lambda: all(_refused(f"{prod.url}{API}/health") for _ in range(10)),
            what="every worker refuses connections",
        )
        assert prod.process.poll() is None, "refusing, the backend still runs"
        _admin(prod, refuse=False)

        def serving_again() -> bool:
            try:
                answers = _burst(f"{prod.url}{API}/health", 12, {})
            except httpx.ConnectError:
                return False
            return {a.status_code for a in answers} == {200} and len(
                {a.headers["x-worker"] for a in answers}
            ) == 2

        _eventually(serving_again, what="both workers accept again")
    finally:
        _admin(prod, latency_ms=0, error_rate=0.0, drift="", refuse=False)


def test_a_dead_worker_is_replaced(prod: Running) -> None:
    answers = _burst(f"{prod.url}{API}/health", 12, {})
    victim = int(answers[0].headers["x-worker"])
    os.kill(victim, 9)

    def replaced() -> bool:
        try:
            workers = {a.headers["x-worker"] for a in _burst(f"{prod.url}{API}/health", 12, {})}
        except httpx.TransportError:
            return False
        return len(workers) == 2 and str(victim) not in workers

    _eventually(replaced, seconds=30, what="a new worker takes the dead one's place")
    assert prod.process.poll() is None


def test_start_up_faults_and_a_graceful_stop(served_database: str, redis_url: str) -> None:
    env = backend_env(served_database, redis_url, FAULT_DRIFT="drop_volume")
    running = start_backend(env, workers=2, admin=False)
    try:
        answers = _burst(f"{running.url}{API}/market-data/AAPL", 12, _address())
        assert len({a.headers["x-worker"] for a in answers}) == 2
        assert all(a.status_code == 200 and "volume" not in a.json() for a in answers)
        workers = {int(a.headers["x-worker"]) for a in answers}
    finally:
        code = running.stop()
    assert code == 0, running.output()
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers outlived it"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://nope"}, "REDIS_URL"),
        ({"RATE_LIMIT_PER_MINUTE": "lots"}, "RATE_LIMIT_PER_MINUTE"),
        ({"TRUSTED_PROXIES": "gateway"}, "TRUSTED_PROXIES"),
        ({"SENTRY_DSN": "not a dsn"}, "SENTRY_DSN"),
        ({"FAULT_ERROR_RATE": "2"}, "FAULT_ERROR_RATE"),
        ({"QUOTE_FEED": "maybe"}, "QUOTE_FEED"),
        ({"PROD_WORKERS": "0"}, "PROD_WORKERS"),
        ({"ADMIN_TOKEN": ""}, "ADMIN_TOKEN"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(change: dict[str, str], named: str) -> None:
    env = backend_env("postgresql://u@127.0.0.1:9/db", "redis://127.0.0.1:9/0", **change)
    ran = subprocess.run(
        [sys.executable, "-m", "backend", "--port", "9", "--admin-port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr
    assert named in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_demo_user_exists(prod: Running) -> None:
    login = httpx.post(
        f"{prod.url}{API}/auth/login",
        json={"email": "demo@example.com", "password": DEMO_PASSWORD},
        headers=_address(),
        timeout=10,
    )
    assert login.status_code == 200, login.text


def _socket_on_each_worker(
    prod: Running, stack: contextlib.ExitStack
) -> dict[str, ClientConnection]:
    """WebSocket connections until one is held by each worker (X-Worker of the handshake)."""
    url = "ws" + prod.url.removeprefix("http") + "/ws"
    held: dict[str, ClientConnection] = {}
    for _ in range(40):
        with contextlib.ExitStack() as attempt:
            socket = attempt.enter_context(connect(url, open_timeout=10))
            worker = socket.response.headers["x-worker"] if socket.response else ""
            hello = json.loads(socket.recv(timeout=10))
            assert hello["type"] == "connection_established"
            if worker not in held:
                held[worker] = socket
                stack.push(attempt.pop_all())  # kept open until the test ends
        if len(held) == 2:
            return held
    pytest.fail(f"no WebSocket reached a second worker: {set(held)}")


def test_a_push_produced_on_one_worker_reaches_a_client_of_the_other(prod: Running) -> None:
    with contextlib.ExitStack() as stack:
        sockets = _socket_on_each_worker(prod, stack)
        listening, other = sorted(sockets)
        socket = sockets[listening]
        subscribe = {"type": "subscribe", "data": {"channel": "signals", "symbol": "SPY"}}
        socket.send(json.dumps(subscribe))
        assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"
        token = _login(prod)
        produced_by = ""
        for _ in range(40):  # new connections until the other worker produces the signal
            answer = FRESH.post(
                f"{prod.url}{API}/signals/generate",
                json={"symbol": "SPY", "timeframe": "1d"},
                headers={"Authorization": f"Bearer {token}", **_address()},
            )
            assert answer.status_code == 200, answer.text
            if answer.headers["x-worker"] == other:
                produced_by = other
                break
        assert produced_by == other, "no POST reached the other worker"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = json.loads(socket.recv(timeout=10))
            if frame["type"] == "signal":
                assert frame["data"]["signal"]["symbol"] == "SPY"
                break
        else:
            pytest.fail("the client never received the signal")
        assert listening != produced_by, "the push crossed from one worker to the other"
