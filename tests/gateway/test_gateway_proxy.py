"""The gateway as a client sees it, with real processes: two mocks (one playing prod) behind it."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ops.gateway.proxy import sticky_cookie
from tests.gateway.processes import (
    AUTH,
    Backends,
    GatewayFactory,
    set_faults,
    set_mode,
    start_mock,
)

QUOTE = "/api/v1/market-data/{symbol}"
ADDRESSES = itertools.count(1)


def spread() -> dict[str, str]:
    # Each request from its own address, as a crowd of browsers: the mock's per-address rate
    # limit then never trips in these tests.
    n = next(ADDRESSES)
    return {"X-Forwarded-For": f"10.9.{(n >> 8) & 255}.{n & 255}"}


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


async def first_frame(socket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
    return frame


def test_direct_mode_passes_http_and_websockets_to_the_chosen_backend(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    set_faults(backends.prod, drift="rename_price")  # tells prod's answers apart
    gateway = start_gateway(backends.mock.url, backends.prod.url)
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        answer = client.get("/api/v1/market-data/SPY", headers=spread())
        assert answer.status_code == 200
        assert answer.headers["x-gateway-upstream"] == "mock"
        assert "price" in answer.json()
        assert "cutover_client=" in answer.headers["set-cookie"]
        set_mode(gateway, mode="direct", primary="prod")
        answer = client.get("/api/v1/market-data/SPY", headers=spread())
        assert answer.headers["x-gateway-upstream"] == "prod"
        assert "last_price" in answer.json()
        assert client.get("/api/v1/nowhere", headers=spread()).status_code == 404

    async def talk() -> None:
        async with connect(ws_url(gateway.url)) as socket:
            assert socket.response is not None
            assert socket.response.headers["x-gateway-upstream"] == "prod"
            assert (await first_frame(socket))["type"] == "connection_established"
            await socket.send(json.dumps({"type": "subscribe", "data": {"channel": "nope"}}))
            assert "type" in await first_frame(socket)  # the backend's answer comes back

    asyncio.run(talk())


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"x-forwarded-for": self.headers.get("x-forwarded-for")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_x_forwarded_for_is_added(echo: str, start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(echo, echo)
    seen = httpx.get(f"{gateway.url}/api/v1/symbols", timeout=5).json()
    assert seen["x-forwarded-for"] == "127.0.0.1"
    seen = httpx.get(
        f"{gateway.url}/api/v1/symbols", headers={"X-Forwarded-For": "10.1.2.3"}, timeout=5
    ).json()
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"


def test_idempotent_request_is_retried_on_the_other_backend_a_post_never(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    doomed = start_mock()
    gateway = start_gateway(doomed.url, backends.prod.url)
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/api/v1/symbols").headers["x-gateway-upstream"] == "mock"
        doomed.stop()  # the mock goes down with a pooled connection open to it
        answer = client.get("/api/v1/market-data/SPY", headers=spread())
        assert answer.status_code == 200
        assert answer.headers["x-gateway-upstream"] == "prod"
        post = client.post("/api/v1/market-data/quotes", json={"symbols": ["SPY"]})
        assert post.status_code == 502
        assert post.headers["x-gateway-upstream"] == "mock"
    state = httpx.get(f"{gateway.admin}/admin/state", headers=AUTH, timeout=5).json()
    assert state["counts"]["retries"] == 1
    metrics = httpx.get(f"{gateway.admin}/gateway/metrics", timeout=5).text
    assert 'gateway_retries_total{failed="mock",retried_on="prod"' in metrics


def test_a_weight_change_moves_exactly_the_moved_websockets_with_1012(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(backends.mock.url, backends.prod.url)
    set_mode(gateway, mode="canary", weight=0)
    low = {"Cookie": f"cutover_client={sticky_cookie(3)}"}  # bucket 3: prod from weight 4
    high = {"Cookie": f"cutover_client={sticky_cookie(80)}"}

    async def scenario() -> None:
        async with (
            connect(ws_url(gateway.url), additional_headers=low) as moved,
            connect(ws_url(gateway.url), additional_headers=high) as stays,
        ):
            for socket in (moved, stays):
                assert socket.response is not None
                assert socket.response.headers["x-gateway-upstream"] == "mock"
                await first_frame(socket)
            await asyncio.to_thread(set_mode, gateway, weight=5)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(moved.recv(), 5)
            assert moved.close_code == 1012
            await stays.send(json.dumps({"type": "ping", "data": {}}))
            assert "type" in await first_frame(stays)  # still open, still answering
        async with connect(ws_url(gateway.url), additional_headers=low) as again:
            assert again.response is not None
            assert again.response.headers["x-gateway-upstream"] == "prod"

    asyncio.run(scenario())


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def timed(client: httpx.Client, url: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        began = time.perf_counter()
        assert client.get(url, headers=spread()).status_code == 200
        took.append((time.perf_counter() - began) * 1000)
    return took


def test_a_slow_candidate_does_not_slow_the_primary(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(backends.mock.url, backends.prod.url, "--queue-size", "5")
    set_mode(gateway, mode="shadow", primary="mock")
    set_faults(backends.prod, latency_ms=2000)
    path = "/api/v1/market-data/SPY"
    with httpx.Client(timeout=10) as client:
        timed(client, f"{gateway.url}{path}", 10)  # warm both pools
        direct = timed(client, f"{backends.mock.url}{path}", 80)
        through = timed(client, f"{gateway.url}{path}", 80)
    state = httpx.get(f"{gateway.admin}/admin/state", headers=AUTH, timeout=5).json()
    print(f"p95 direct {p95(direct):.2f} ms, through the shadowing gateway {p95(through):.2f} ms")
    assert p95(through) < p95(direct) + 25  # 2 s per copy: any coupling would show at once
    assert state["counts"]["shadow"]["dropped"] > 0  # a full queue drops copies, never waits


def send_reads(gateway_url: str, count: int) -> None:
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        for n in range(count):
            symbol = ("SPY", "AAPL", "MSFT")[n % 3]
            for path in (
                f"/api/v1/market-data/{symbol}",
                f"/api/v1/market-data/{symbol}/historical?period=1h&interval=5m",
                "/api/v1/market/opportunities?limit=5",
            ):
                assert client.get(path, headers=spread()).status_code == 200


def diffs(gateway_url: str, threshold: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        document = httpx.get(
            f"{gateway_url}/admin/diffs",
            params={"min_samples": 50, "threshold": threshold},
            headers=AUTH,
            timeout=5,
        ).json()
        if document["queued"] == 0 or time.monotonic() > deadline:
            time.sleep(0.3)
            return {row["route"]: row for row in document["routes"]}
        time.sleep(0.1)


def test_the_differ_flags_exactly_the_drifted_route(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(backends.mock.url, backends.prod.url, "--noise-share", "0.3")
    set_mode(gateway, mode="shadow", primary="mock")
    send_reads(gateway.url, 100)
    # A live price may tick between the two answers (~0.1 % of quotes): 2 % with 100 samples.
    same = diffs(gateway.admin, threshold=0.02)
    assert set(same) == {QUOTE, f"{QUOTE}/historical", "/api/v1/market/opportunities"}
    assert {row["verdict"] for row in same.values()} == {"pass"}
    assert "body.timestamp" in same[QUOTE]["noise_fields"]  # primary vs primary: noise
    # Compared, not ignored: it differs whenever the two answers fall in different milliseconds.
    assert same[QUOTE]["fields"]["body.timestamp"]["changed"] >= 1

    httpx.delete(f"{gateway.admin}/admin/diffs", headers=AUTH, timeout=5)
    set_faults(backends.prod, drift="rename_price")  # switched on at run time
    send_reads(gateway.url, 60)
    drifted = diffs(gateway.admin, threshold=0.01)
    assert {route for route, row in drifted.items() if row["verdict"] == "fail"} == {QUOTE}
    assert drifted[QUOTE]["differing"] == drifted[QUOTE]["compared"] == 60
    assert drifted[QUOTE]["fields"]["body.last_price"] == {"extra": 60}
    sample = drifted[QUOTE]["samples"][0]
    assert "last_price" in sample["candidate"]["body"]
    assert "price" in sample["primary"]["body"]


def test_mode_and_weight_survive_a_gateway_restart(
    backends: Backends, start_gateway: GatewayFactory
) -> None:
    first = start_gateway(backends.mock.url, backends.prod.url)
    set_mode(first, mode="canary", weight=25)
    first.stop()
    second = start_gateway(backends.mock.url, backends.prod.url)
    state = httpx.get(f"{second.admin}/admin/state", headers=AUTH, timeout=5).json()
    assert (state["mode"], state["weight"]) == ("canary", 25)
    assert httpx.get(f"{second.admin}/admin/state", timeout=5).status_code == 401
    bad = httpx.put(f"{second.admin}/admin/mode", json={"weight": 101}, headers=AUTH, timeout=5)
    assert bad.status_code == 400
