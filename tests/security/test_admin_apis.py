"""The admin APIs (the mock's and prod's fault admin, the gateway's) want their token on every
route and listen on loopback only, even when the API itself is served on another address."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.backend.processes import ADMIN_TOKEN, Running
from tests.security.servers import Server, discard, start_gateway, start_mock, start_prod

# A loopback address other than the admin's own: an admin that followed --host would show it.
API_HOST = "127.0.0.2"
WRONG = [
    {},
    {"Authorization": "Bearer not-the-admin-token"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": "Bearer"},
]
# Routes each admin has: each must answer 401 to every wrong credential.
KNOWN = {
    "mock": [("GET", "/admin/faults"), ("PUT", "/admin/faults")],
    "prod": [("GET", "/admin/faults"), ("PUT", "/admin/faults")],
    "gateway": [("GET", "/admin/state"), ("PUT", "/admin/mode"), ("GET", "/admin/diffs")],
}
# Routes agreed between the teams (some may not be wired yet): never served without the token.
AGREED = {
    "mock": [("PUT", "/admin/records")],
    "prod": [],
    "gateway": [
        ("DELETE", "/admin/diffs"),
        ("GET", "/admin/outbox"),
        ("GET", "/admin/canary"),
        ("POST", "/admin/canary"),
        ("POST", "/admin/canary/abort"),
        ("POST", "/admin/canary/resume"),
        ("POST", "/admin/promote"),
        ("POST", "/admin/rollback"),
        ("GET", "/admin/cutover"),
        ("GET", "/admin/upstreams"),
    ],
}


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port))
    return found


@pytest.fixture(scope="module")
def elsewhere(
    servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Running]]:
    """The three processes with their API on 127.0.0.2 (prod shares the drills' databases)."""
    env = servers["prod"].running.env
    started: dict[str, Running] = {}
    try:
        started["mock"] = start_mock(env, API_HOST)
        started["prod"] = start_prod(env, API_HOST)
        var = tmp_path_factory.mktemp("gateway") / "var"
        started["gateway"] = start_gateway(env, started["mock"].url, var, API_HOST)
        yield started
    finally:
        for running in started.values():
            discard(running)


@pytest.mark.parametrize("name", ["mock", "prod", "gateway"])
def test_the_admin_listens_on_loopback_only(elsewhere: dict[str, Running], name: str) -> None:
    running = elsewhere[name]
    assert running.admin_url is not None
    admin_port = int(running.admin_url.rsplit(":", 1)[1])
    api_port = int(running.url.rsplit(":", 1)[1])
    sockets = listening(running.process.pid)
    assert {ip for ip, port in sockets if port == admin_port} == {"127.0.0.1"}, sockets
    assert {ip for ip, port in sockets if port == api_port} == {API_HOST}, sockets


@pytest.mark.parametrize("name", ["mock", "prod", "gateway"])
def test_every_admin_route_wants_the_token(elsewhere: dict[str, Running], name: str) -> None:
    running = elsewhere[name]
    assert running.admin_url is not None
    with httpx.Client(base_url=running.admin_url, timeout=10) as http:
        for routes, allowed in ((KNOWN[name], {401}), (AGREED[name], {401, 404, 405})):
            for method, path in routes:
                for headers in WRONG:
                    answer = http.request(method, path, headers=headers, json={})
                    assert answer.status_code in allowed, (
                        f"{name} {method} {path} with {headers or 'no token'}: "
                        f"{answer.status_code} {answer.text[:200]}"
                    )
        right = http.get(KNOWN[name][0][1], headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert right.status_code == 200, "the right token is let in"


def test_a_refused_change_changes_nothing(elsewhere: dict[str, Running]) -> None:
    running = elsewhere["mock"]
    with httpx.Client(base_url=str(running.admin_url), timeout=10) as http:
        refused = http.put("/admin/faults", json={"error_rate": 1.0})
        assert refused.status_code == 401
        faults = http.get("/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert faults.json()["error_rate"] == 0
    assert httpx.get(f"{running.url}/api/v1/health", timeout=10).status_code == 200


@pytest.mark.parametrize("name", ["mock", "prod", "gateway"])
def test_the_admin_port_refuses_another_address(elsewhere: dict[str, Running], name: str) -> None:
    admin_url = elsewhere[name].admin_url
    assert admin_url is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{admin_url.replace('127.0.0.1', API_HOST)}/admin/state", timeout=5)
