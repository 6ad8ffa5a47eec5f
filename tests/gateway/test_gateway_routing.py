"""Where the gateway sends a client: buckets, modes, route templates, what shadow copies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ops.gateway.routing import (
    RouteTemplates,
    Routing,
    RoutingController,
    bucket_of,
    identify,
    is_shadowed_read,
    token_subject,
)
from ops.settings import PROJECT_ROOT
from ops.state import StateStore

TEMPLATES = RouteTemplates.from_openapi(PROJECT_ROOT / "contract" / "openapi.json")


def fake_jwt(sub: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.signature"


def test_buckets_are_stable_and_spread() -> None:
    buckets = [bucket_of(f"sub:user-{n}") for n in range(2000)]
    assert buckets == [bucket_of(f"sub:user-{n}") for n in range(2000)]
    assert set(buckets) == set(range(100))


def test_a_client_in_the_5_percent_stays_in_the_25_percent() -> None:
    keys = [f"sub:user-{n}" for n in range(2000)]
    for weight_from, weight_to in ((5, 25), (25, 50), (50, 100)):
        before, after = Routing("canary", "mock", weight_from), Routing("canary", "mock", weight_to)
        on_prod = [k for k in keys if before.upstream_for(bucket_of(k)) == "prod"]
        assert on_prod
        assert all(after.upstream_for(bucket_of(k)) == "prod" for k in on_prod)
    assert all(Routing("canary", "mock", 0).upstream_for(bucket_of(k)) == "mock" for k in keys)


def test_client_key_is_token_subject_then_cookie_then_address() -> None:
    token = fake_jwt("u-42")
    assert token_subject(token) == "u-42"
    assert token_subject("not-a-jwt") is None
    by_token = identify(
        {"authorization": f"Bearer {token}", "cookie": "cutover_client=abc"}, None, "1.2.3.4"
    )
    assert by_token.key == "sub:u-42"
    assert not by_token.needs_cookie
    # The same user from another address and another cookie keeps its bucket.
    elsewhere = identify({"authorization": f"Bearer {token}"}, None, "5.6.7.8")
    assert elsewhere.bucket == by_token.bucket
    assert identify({}, token, "1.2.3.4").key == "sub:u-42"  # a WebSocket's ?token=
    by_cookie = identify({"cookie": "a=1; cutover_client=abc"}, None, "1.2.3.4")
    assert by_cookie.key == "cookie:abc"
    assert not by_cookie.needs_cookie
    by_address = identify({}, None, "1.2.3.4")
    assert by_address.key == "addr:1.2.3.4"
    assert by_address.needs_cookie


def test_route_templates_prefer_literal_segments() -> None:
    assert TEMPLATES.template("/api/v1/market-data/SPY") == "/api/v1/market-data/{symbol}"
    assert TEMPLATES.template("/api/v1/market-data/quotes") == "/api/v1/market-data/quotes"
    assert (
        TEMPLATES.template("/api/v1/signals/precise-options") == "/api/v1/signals/precise-options"
    )
    assert TEMPLATES.template("/api/v1/signals/AAPL") == "/api/v1/signals/{symbol}"
    assert (
        TEMPLATES.template("/api/v1/signals/abc/insights") == "/api/v1/signals/{signal_id}/insights"
    )
    assert TEMPLATES.template("/nowhere/at/all") == "other"


def test_shadow_copies_reads_only() -> None:
    assert is_shadowed_read("GET", "/api/v1/market-data/{symbol}")
    assert is_shadowed_read("POST", "/api/v1/market-data/quotes")
    assert not is_shadowed_read("POST", "/api/v1/auth/login")
    assert not is_shadowed_read("PUT", "/api/v1/watchlists/{name}")
    # User state is compared now that user writes are mirrored; token-rotating POSTs never.
    assert is_shadowed_read("GET", "/api/v1/watchlists")
    assert is_shadowed_read("GET", "/api/v1/auth/me")
    assert is_shadowed_read("GET", "/api/v1/backtests/{backtest_id}")
    assert not is_shadowed_read("POST", "/api/v1/auth/refresh")
    assert not is_shadowed_read("DELETE", "/api/v1/auth/me")
    assert not is_shadowed_read("GET", "/ws")


def test_routing_is_persisted_and_resumed(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    controller = RoutingController(store)
    assert controller.routing == Routing("direct", "mock", 0)
    controller.set("canary", "mock", 25)
    assert store.load().mode == "canary"
    assert store.load().weight == 25
    assert RoutingController(store).routing == Routing("canary", "mock", 25)
    controller.set("shadow", "mock", 0)
    assert RoutingController(store).routing == Routing("shadow", "mock", 0)
    controller.set("direct", "prod", 100)
    assert store.load().mode == "prod"
    assert RoutingController(store).routing == Routing("direct", "prod", 100)
