"""Health, symbols, the OpenAPI, metrics and the headers every answer carries."""

from __future__ import annotations

import re
import uuid

import httpx
import msgspec
import pytest

from contract.types import Health, SymbolList

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_health_reports_status_backend_checks_and_data(client: httpx.Client, expect) -> None:
    response = client.get(f"{API}/health")
    health = expect.ok(response, Health)
    assert health.status in ("ok", "degraded")
    assert health.backend == response.headers["x-backend"]
    assert health.version
    assert ISO_MS.match(health.timestamp), health.timestamp
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", health.data.asof)
    if health.data.source == "synthetic":
        assert health.data.seed is not None


def test_health_of_the_suites_own_mock_says_what_it_was_started_with(
    client: httpx.Client, target
) -> None:
    if not target.own:
        pytest.skip("the seed and as-of date are known only for the suite's own server")
    health = msgspec.json.decode(client.get(f"{API}/health").content, type=Health)
    assert (health.backend, health.data.source) == ("mock", "synthetic")
    assert (health.data.seed, health.data.asof) == (42, "2026-11-20")
    assert health.checks.feed == "ok"


def test_symbols_are_the_served_universe_sorted(client: httpx.Client, expect, reader) -> None:
    listing = expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList)
    names = [item.symbol for item in listing.symbols]
    assert listing.count == len(names) > 0
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert "SPY" in names
    for item in listing.symbols:
        assert re.match(r"^[A-Z0-9.\-^]{1,12}$", item.symbol), item.symbol
        assert item.name
        assert item.sector
        assert item.exchange


def test_symbols_are_public(client: httpx.Client, expect) -> None:
    expect.ok(client.get(f"{API}/symbols"), SymbolList)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", f"{API}/health", 200),
        ("GET", f"{API}/symbols", 200),
        ("GET", f"{API}/no-such-route", 404),
        ("GET", "/no-such-route-at-all", 404),
        ("DELETE", f"{API}/symbols", 405),
        ("GET", f"{API}/market-data/ZZZZ", 404),
        ("GET", f"{API}/watchlists", 401),
    ],
)
def test_request_id_is_echoed_and_backend_named_on_every_answer(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    sent = f"contract-{uuid.uuid4().hex}"
    response = client.request(method, path, headers={"X-Request-ID": sent})
    assert response.status_code == status, response.text
    assert response.headers.get("x-request-id") == sent
    assert response.headers.get("x-backend") in ("mock", "production")


@pytest.mark.parametrize("path", [f"{API}/health", f"{API}/no-such-route"])
def test_request_id_is_generated_when_not_sent(client: httpx.Client, path: str) -> None:
    first = client.get(path)
    second = client.get(path)
    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(ids), ids
    assert ids[0] != ids[1], "each request gets its own id"
    assert first.headers.get("x-backend") in ("mock", "production")


def test_openapi_documents_every_route_and_the_error_statuses(client: httpx.Client) -> None:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/v1/health",
        "/api/v1/symbols",
        "/api/v1/market-data/{symbol}",
        "/api/v1/market-data/quotes",
        "/api/v1/market-data/{symbol}/historical",
        "/api/v1/market-data/{symbol}/indicators",
        "/api/v1/signals",
        "/api/v1/signals/{symbol}",
        "/api/v1/signals/precise-options",
        "/api/v1/signals/{signal_id}/insights",
        "/api/v1/signals/generate",
        "/api/v1/market/opportunities",
        "/api/v1/agents",
        "/api/v1/strategies",
        "/api/v1/backtests",
        "/api/v1/backtests/{backtest_id}",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/watchlists",
        "/api/v1/watchlists/{name}",
    ):
        assert path in paths, f"{path} is not in the OpenAPI"
    codes = {
        code
        for operations in paths.values()
        for operation in operations.values()
        if isinstance(operation, dict)
        for code in operation.get("responses", {})
    }
    for code in ("401", "404", "409", "413", "422", "429", "503"):
        assert code in codes, f"no route documents {code}"


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    client.get(f"{API}/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text
    assert response.headers.get("x-backend") in ("mock", "production")
