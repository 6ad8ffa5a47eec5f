"""The gateway's upstream client as a client sees it: what reaches the backend is what was sent,
and what comes back is the backend's answer, never something the gateway's pool kept."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.processes import GatewayFactory


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with what it received; /login sets a cookie, /moved redirects, /gzip compresses,
    /hang-up closes the connection after its answer."""

    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, extra: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in {"content-type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        seen = {
            "method": self.command,
            "target": self.path,
            "cookie": self.headers.get_all("cookie") or [],
            "x-custom": self.headers.get_all("x-custom") or [],
            "body": self.rfile.read(length).decode() if length else "",
        }
        if self.path == "/gzip":
            body = gzip.compress(json.dumps({"packed": True}).encode())
            self._answer(200, {"content-encoding": "gzip"}, body)
        elif self.path == "/hang-up":
            # Closes the connection after answering, without saying so: the next request must
            # not be lost on it.
            self._answer(200, {}, b'{"once": true}')
            self.close_connection = True
        elif self.path == "/login":
            self._answer(200, {"set-cookie": "session=alice; Path=/; HttpOnly"}, b"{}")
        elif self.path == "/moved":
            self._answer(302, {"location": "/elsewhere"}, b"{}")
        else:
            self._answer(200, {}, json.dumps(seen).encode())

    def do_GET(self) -> None:
        self._echo()

    def do_POST(self) -> None:
        self._echo()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_one_clients_cookie_never_reaches_the_backend_for_another(
    upstream: str, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(upstream, upstream)
    with httpx.Client(base_url=gateway.url, timeout=5) as alice:
        login = alice.get("/login")
        assert login.cookies.get("session") == "alice"
    # A new browser: the gateway's pooled connections must not carry alice's cookie to it.
    with httpx.Client(base_url=gateway.url, timeout=5) as bob:
        seen = bob.get("/api/v1/watchlists").json()
    assert not any("session=alice" in cookie for cookie in seen["cookie"])


def test_a_redirect_goes_back_to_the_client_unfollowed(
    upstream: str, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(upstream, upstream)
    answer = httpx.get(f"{gateway.url}/moved", timeout=5)
    assert answer.status_code == 302
    assert answer.headers["location"] == "/elsewhere"


def test_target_headers_and_body_reach_the_backend_as_sent(
    upstream: str, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(upstream, upstream)
    target = "/api/v1/things/a%2Fb?q=x%20y&q=%C3%A9&empty="
    seen = httpx.post(
        f"{gateway.url}{target}",
        content=b'{"name":"x"}',
        headers=[("x-custom", "one"), ("x-custom", "two"), ("content-type", "application/json")],
        timeout=5,
    ).json()
    assert seen["method"] == "POST"
    assert seen["target"] == target  # not re-encoded, not normalised
    assert seen["body"] == '{"name":"x"}'
    assert ", ".join(seen["x-custom"]) == "one, two"


def test_a_compressed_answer_arrives_decoded_and_a_closed_connection_costs_nothing(
    upstream: str, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(upstream, upstream)
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        packed = client.get("/gzip")
        assert packed.status_code == 200
        assert "content-encoding" not in packed.headers
        assert packed.json() == {"packed": True}
        for _ in range(5):
            answer = client.get("/hang-up")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"once": True}
