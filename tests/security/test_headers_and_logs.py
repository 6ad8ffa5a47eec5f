"""What a browser and an operator see: security headers on every API answer (successes, errors,
preflights), and no password or token in any log line, even at DEBUG."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.security.servers import API, Server, discard, fresh_address, new_account, start_gateway

# Plain HTTP on loopback: no Strict-Transport-Security (browsers ignore it without TLS, and the
# proxy that terminates TLS in front of a backend is where it belongs).
EXPECTED = {
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
ANSWERS = [
    ("GET", f"{API}/health", None),
    ("GET", f"{API}/symbols", None),
    ("GET", f"{API}/market-data/SPY/historical?period=5d", None),
    ("GET", f"{API}/market-data/ZZZZ", None),
    ("GET", f"{API}/signals?limit=-1", None),
    ("GET", f"{API}/auth/me", None),
    ("POST", f"{API}/auth/login", b"not json"),
    ("DELETE", f"{API}/symbols", None),
    ("GET", "/metrics", None),
    ("GET", "/schema/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ANSWERS)
def test_api_answers_carry_the_security_headers(
    backend: Server, method: str, path: str, body: bytes | None
) -> None:
    answer = httpx.request(method, f"{backend.url}{path}", content=body, timeout=30)
    assert answer.status_code < 500, answer.text
    for name, value in EXPECTED.items():
        assert answer.headers.get(name) == value, f"{method} {path}: {name}"
    policy = answer.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy, f"{method} {path}: {policy!r}"
    assert "frame-ancestors 'none'" in policy, f"{method} {path}: {policy!r}"
    assert "strict-transport-security" not in answer.headers


def test_the_docs_page_may_load_its_scripts_but_is_never_framed(backend: Server) -> None:
    answer = httpx.get(f"{backend.url}/schema", timeout=30, follow_redirects=True)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src" in policy, "the docs' own scripts may run"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_cors_preflight_carries_them_too(backend: Server) -> None:
    answer = httpx.options(
        f"{backend.url}{API}/watchlists",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
        timeout=30,
    )
    assert answer.status_code in (200, 204)
    assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_no_password_or_token_reaches_the_logs(backend: Server) -> None:
    account = new_account(backend, "secret-keeper")
    secrets = [account.password, account.access, account.refresh]
    headers = {"X-Forwarded-For": fresh_address()}
    with httpx.Client(base_url=backend.url, timeout=30, headers=headers) as http:
        # Every way a secret travels: bodies, headers, a failed login, a refresh, a WS query.
        wrong = http.post(
            f"{API}/auth/login", json={"email": account.email, "password": account.password + "x"}
        )
        assert wrong.status_code == 401
        refreshed = http.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh})
        assert refreshed.status_code == 200
        pair = refreshed.json()
        secrets += [pair["access_token"], pair["refresh_token"], account.password + "x"]
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        assert http.get(f"{API}/auth/me", headers=headers).status_code == 200
        again = http.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh})
        assert again.status_code == 401, "a reused refresh token is refused (and not logged)"
        bad = http.post(
            f"{API}/auth/register",
            json={"email": "not-an-email", "password": account.password, "name": "x"},
        )
        assert bad.status_code == 422
    ws_url = backend.url.replace("http://", "ws://") + f"/ws?token={pair['access_token']}"
    with connect(ws_url, open_timeout=10) as socket:
        socket.recv(timeout=5)
    logs = backend.logs()
    assert f"{API}/auth/refresh" in logs, "the access lines were written"
    leaked = [secret[:12] + "…" for secret in secrets if secret in logs]
    assert not leaked, f"{backend.name}'s logs hold secrets: {leaked}"


def test_no_password_or_token_reaches_the_gateways_log(
    servers: dict[str, Server], tmp_path: Path
) -> None:
    upstream = servers["mock"]
    gateway = start_gateway(upstream.running.env, upstream.url, tmp_path / "var")
    try:
        front = Server("gateway", gateway)
        account = new_account(front, "through-the-gateway")
        secrets = [account.password, account.access, account.refresh]
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            assert http.get(f"{API}/auth/me", headers=account.headers).status_code == 200
            pair = http.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh})
            assert pair.status_code == 200
            secrets += [pair.json()["access_token"], pair.json()["refresh_token"]]
        ws_url = gateway.url.replace("http://", "ws://") + f"/ws?token={account.access}"
        with connect(ws_url, open_timeout=10) as socket:
            socket.recv(timeout=5)
        time.sleep(0.5)  # the gateway's log lines of the last exchange
        logs = front.logs()
        assert logs.strip(), "the gateway wrote no log"
        leaked = [secret[:12] + "…" for secret in secrets if secret in logs]
        assert not leaked, f"the gateway's log holds secrets: {leaked}"
    finally:
        discard(gateway)
