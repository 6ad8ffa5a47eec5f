"""Fixtures of the contract suite: the server under test, one HTTP client, the demo session.

The suite speaks only HTTP and WebSocket to `CONTRACT_BASE_URL`; when that is unset it starts a
real mock server process on a free port and stops it by pid at the end. Every request goes
through one client whose hook records the answers, so any test that saw a 5xx fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import msgspec
import pytest

from contract.identity import ALGORITHM, DEMO_EMAIL, ISSUER, user_id_for
from contract.types import Error, Health, TokenPair, UserEnvelope
from ops import services

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
# The key the suite's own server signs with: lets the suite mint an expired token.
SUITE_SECRET_KEY = "contract-suite-secret-key-not-for-production-0123456789abcdef012"
SUITE_ENV = {
    "SECRET_KEY": SUITE_SECRET_KEY,
    "ADMIN_TOKEN": "contract-admin-token",
    "DEMO_PASSWORD": "demo-password-123",
    "MARKET_SEED": "42",
    "MARKET_ASOF": "2026-11-20",
    "QUOTE_FEED": "simulated",
    "RATE_LIMIT_PER_MINUTE": "600",
    "LOGIN_LIMIT_PER_ACCOUNT": "10",
    "LOGIN_LIMIT_PER_ADDRESS": "1000",
    "LOG_LEVEL": "WARNING",
    # Below the contract's 100, so that the cap is reachable with the served universe.
    "WS_MAX_SUBSCRIPTIONS": "40",
    # A developer's .env must not inject faults into the suite's server.
    "FAULT_LATENCY_MS": "0",
    "FAULT_ERROR_RATE": "0",
    "FAULT_DRIFT": "",
    "FAULT_REFUSE": "false",
}
START_TIMEOUT = 30.0


@dataclass
class Target:
    """The server under test and what the suite knows about it."""

    base_url: str
    own: bool
    secret_key: str | None
    demo_password: str
    started_in: float | None = None

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        return scheme + ":" + self.base_url.split(":", 1)[1].rstrip("/") + "/ws"


@dataclass
class Traffic:
    """Every answer the suite received: status counts per caller, and the 5xx seen."""

    by_caller: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    demo_token: str | None = None
    mock_start_seconds: float | None = None


TRAFFIC = Traffic()


def _free_port() -> int:
    return services.free_port()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    """CONTRACT_BASE_URL, or a mock server process of the suite's own on a free port."""
    demo_password = os.environ.get("CONTRACT_DEMO_PASSWORD", "demo-password-123")
    external = os.environ.get("CONTRACT_BASE_URL", "").strip()
    if external:
        yield Target(
            base_url=external.rstrip("/"),
            own=False,
            secret_key=os.environ.get("CONTRACT_SECRET_KEY") or None,
            demo_password=demo_password,
        )
        return
    port = _free_port()
    env = {**os.environ, **SUITE_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    log_dir = Path(tempfile.mkdtemp(prefix="contract-suite-"))
    log_path = log_dir / "mock.log"
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mock_backend", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = started + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the mock exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{base_url}{API}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the mock did not answer within {START_TIMEOUT} s:\n{_tail(log_path)}")
            time.sleep(0.1)
        TRAFFIC.mock_start_seconds = time.monotonic() - started
        yield Target(
            base_url=base_url,
            own=True,
            secret_key=SUITE_SECRET_KEY,
            demo_password=SUITE_ENV["DEMO_PASSWORD"],
            started_in=TRAFFIC.mock_start_seconds,
        )
    finally:
        _stop(process)


def _record(response: httpx.Response) -> None:
    auth = response.request.headers.get("authorization")
    if auth is None:
        caller = "anonymous"
    elif TRAFFIC.demo_token and auth == f"Bearer {TRAFFIC.demo_token}":
        caller = "demo"
    else:
        caller = "other users"
    TRAFFIC.by_caller[caller] += 1
    if response.status_code >= 500:
        response.read()
        TRAFFIC.server_errors.append(
            f"{response.request.method} {response.request.url} -> {response.status_code} "
            f"{response.text[:300]}"
        )


@pytest.fixture(scope="session")
def client(target: Target) -> Iterator[httpx.Client]:
    """The one HTTP client of the suite; its hook records every answer."""
    with httpx.Client(
        base_url=target.base_url, timeout=30.0, event_hooks={"response": [_record]}
    ) as http:
        yield http


@pytest.fixture(autouse=True)
def no_server_errors() -> Iterator[None]:
    """No input of the suite may yield a 5xx: a 5xx is a bug of the server."""
    seen = len(TRAFFIC.server_errors)
    yield
    new = TRAFFIC.server_errors[seen:]
    assert not new, "the server answered 5xx:\n" + "\n".join(new)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    """A user the suite logged in; `access`/`refresh` follow rotation when a test updates them."""

    email: str
    password: str
    id: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


def _login(http: httpx.Client, email: str, password: str) -> TokenPair:
    response = http.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, f"login of {email}: {response.status_code} {response.text}"
    return msgspec.json.decode(response.content, type=TokenPair)


@pytest.fixture(scope="session")
def demo(client: httpx.Client, target: Target) -> Account:
    """The demo user, logged in once for the session; bulk reads use its per-user limit."""
    pair = _login(client, DEMO_EMAIL, target.demo_password)
    TRAFFIC.demo_token = pair.access_token
    return Account(
        DEMO_EMAIL, target.demo_password, pair.user.id, pair.access_token, pair.refresh_token
    )


@pytest.fixture(scope="session")
def reader(demo: Account) -> dict[str, str]:
    """Headers for bulk reads of public routes: the demo user's token."""
    return demo.headers


def unique_email(tag: str = "user") -> str:
    return f"contract-{tag}-{uuid.uuid4().hex}@example.com"


@pytest.fixture
def make_user(client: httpx.Client) -> Iterator[Callable[..., Account]]:
    """Register and log in fresh users (unique emails); each is deleted again at the end."""
    made: list[Account] = []

    def make(tag: str = "user", email: str | None = None) -> Account:
        address = email or unique_email(tag)
        password = f"pw-{uuid.uuid4().hex[:16]}"
        response = client.post(
            f"{API}/auth/register",
            json={"email": address, "password": password, "name": "Contract Suite"},
        )
        assert response.status_code == 201, f"register: {response.status_code} {response.text}"
        user = msgspec.json.decode(response.content, type=UserEnvelope).user
        pair = _login(client, address, password)
        account = Account(address, password, user.id, pair.access_token, pair.refresh_token)
        made.append(account)
        return account

    yield make
    for account in made:
        # Best effort: a test may have deleted the user, or driven it past its rate limit.
        client.delete(f"{API}/auth/me", headers=account.headers)


class Expect:
    """Assertions on answers: success shapes decoded strictly, errors in the contract's shape."""

    def ok(self, response: httpx.Response, kind: type[T], status: int = 200) -> T:
        assert response.status_code == status, describe(response, f"expected {status}")
        self.stamped(response)
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.ValidationError as exc:
            pytest.fail(
                f"{response.request.method} {response.request.url}: not a {kind.__name__}:"
                f" {exc}\n{response.text[:500]}"
            )

    def stamped(self, response: httpx.Response) -> None:
        assert response.headers.get("x-backend") in ("mock", "production"), describe(
            response, "X-Backend missing"
        )
        assert response.headers.get("x-request-id"), describe(response, "X-Request-ID missing")

    def error(self, response: httpx.Response, status: int) -> Error:
        assert response.status_code == status, describe(response, f"expected {status}")
        self.stamped(response)
        try:
            body = msgspec.json.decode(response.content, type=Error)
        except msgspec.DecodeError as exc:
            pytest.fail(
                f"error body is not {{status_code, detail, extra?}}: {exc}: {response.text}"
            )
        assert body.status_code == status, describe(response, "status_code in the body differs")
        assert body.detail.strip(), describe(response, "empty detail")
        if status == 401:
            challenge = response.headers.get("www-authenticate", "")
            assert challenge.lower().startswith("bearer"), describe(
                response, "401 without WWW-Authenticate: Bearer"
            )
        return body

    def field(self, response: httpx.Response, name: str) -> Error:
        """A 422 whose `extra` names the field `name` (as its key, or in its message)."""
        body = self.error(response, 422)
        assert body.extra, describe(response, "422 without `extra` naming the field")
        named = [
            item
            for item in body.extra
            if name.lower() in item.key.lower() or name.lower() in item.message.lower()
        ]
        assert named, describe(response, f"`extra` does not name {name!r}")
        assert all(item.message.strip() for item in body.extra)
        return body


def describe(response: httpx.Response, what: str) -> str:
    return (
        f"{what}: {response.request.method} {response.request.url} -> {response.status_code} "
        f"{response.text[:600]}"
    )


@pytest.fixture(scope="session")
def expect() -> Expect:
    return Expect()


@pytest.fixture(scope="session")
def health(client: httpx.Client) -> Health:
    response = client.get(f"{API}/health")
    assert response.status_code == 200, describe(response, "health")
    return msgspec.json.decode(response.content, type=Health)


@dataclass(frozen=True)
class Synthetic:
    """The seed and as-of date of a server that serves the synthetic history."""

    seed: int
    asof: date


@pytest.fixture(scope="session")
def synthetic(health: Health) -> Synthetic:
    """Golden values apply only to a synthetic history; other sources skip with a reason."""
    if health.data.source != "synthetic" or health.data.seed is None:
        pytest.skip(f"golden values need data.source synthetic (server says {health.data.source})")
    return Synthetic(seed=health.data.seed, asof=date.fromisoformat(health.data.asof))


def mint_token(secret: str, token_type: str, expires_in: int, email: str = DEMO_EMAIL) -> str:
    """A token signed like the server's (HS256, the contract's claims); negative = expired."""
    now = int(time.time())
    # Issued now, or (expired) half an hour before it expired; never before the user existed
    # for a live token, since a token older than its user does not work.
    issued = now if expires_in > 0 else now + expires_in - 30 * 60
    payload: dict[str, Any] = {
        "sub": user_id_for(email),
        "email": email,
        "type": token_type,
        "iss": ISSUER,
        "iat": issued,
        "exp": now + expires_in,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


@pytest.fixture(scope="session")
def minted(target: Target) -> Callable[[str, int], str]:
    """Mint tokens with the server's key: only when the suite knows it (its own server)."""
    if not target.secret_key:
        pytest.skip("the server's SECRET_KEY is unknown (set CONTRACT_SECRET_KEY to mint tokens)")
    key = target.secret_key
    return lambda token_type, expires_in: mint_token(key, token_type, expires_in)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    total = sum(TRAFFIC.by_caller.values())
    if not total:
        return
    parts = ", ".join(f"{name} {count}" for name, count in sorted(TRAFFIC.by_caller.items()))
    terminalreporter.write_line(f"contract suite: {total} HTTP requests ({parts})")
    if TRAFFIC.mock_start_seconds is not None:
        terminalreporter.write_line(
            f"contract suite: the mock answered its health check {TRAFFIC.mock_start_seconds:.2f} s"
            " after start"
        )
