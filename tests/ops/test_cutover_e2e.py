"""The cutover through the operator's commands on real processes (mock, prod with 2 workers on
PostgreSQL and Redis, the worker, the gateway), one module sharing them:

- shadow of mock against prod over the frontend's mix passes every route with the checked-in
  ignore file; the same run with prod's field drift switched on at run time flags exactly the
  drifted route;
- promotion and rollback rewrite the frontend env file; a WebSocket client through the gateway
  is moved with 1012 by each and reconnects to its new backend;
- no acknowledged write is lost across shadow → canary → promote → rollback → promote, with the
  mock restarted in between: writers run through the gateway the whole time.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from contract.identity import DEMO_EMAIL
from ops import databases, services
from ops.settings import load_settings, read_env_file
from tests.conftest import CLI_ENV_DROPPED, Env, run_cli, stop_recorded
from tests.ops.conftest import ran_ok, recorded_pids

API = "/api/v1"


@pytest.fixture(scope="module")
def cutover(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str, redis_url: str
) -> Iterator[Env]:
    """db, load-data, simple, prod, worker and the gateway in shadow mode, once per module."""
    tmp = tmp_path_factory.mktemp("cutover")
    name = f"cutover_test_{secrets.token_hex(4)}"
    databases.create_database(postgres_server_url, name)
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV_DROPPED} | {
        "CUTOVER_VAR_DIR": str(tmp / "var"),
        "CUTOVER_ENV_FILE": str(tmp / ".env"),
        "FRONTEND_ENV_FILE": str(tmp / "frontend.env"),
        "DATABASE_URL": databases.with_database(postgres_server_url, name),
        "REDIS_URL": redis_url,
        "CUTOVER_HEALTH_TIMEOUT": "60",
        "CUTOVER_STOP_GRACE": "5",
        "PROD_WORKERS": "2",
        "COLUMNS": "200",
        **{
            key: str(services.free_port())
            for key in (
                "MOCK_PORT",
                "MOCK_ADMIN_PORT",
                "PROD_PORT",
                "PROD_ADMIN_PORT",
                "GATEWAY_PORT",
                "GATEWAY_ADMIN_PORT",
                "FRONTEND_PORT",
            )
        },
    }
    try:
        for command in (("db",), ("load-data",), ("simple",), ("prod",), ("worker",), ("shadow",)):
            ran_ok(env, *command, timeout=240)
        yield env
    finally:
        stop_recorded(load_settings(env), grace=3)
        databases.drop_database(postgres_server_url, name)


def url(env: Env, port: str) -> str:
    return f"http://127.0.0.1:{env[port]}"


def admin_headers(env: Env) -> dict[str, str]:
    token = read_env_file(Path(env["CUTOVER_ENV_FILE"])).get("ADMIN_TOKEN", "")
    return {"Authorization": f"Bearer {token}"}


def set_drift(env: Env, drift: str) -> None:
    answer = httpx.put(
        f"{url(env, 'PROD_ADMIN_PORT')}/admin/faults",
        json={"drift": drift},
        headers=admin_headers(env),
        timeout=5,
    )
    answer.raise_for_status()


def shadow_diffs(env: Env) -> dict[str, Any]:
    path = Path(env["CUTOVER_VAR_DIR"]) / "reports" / "shadow-diffs.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_shadow_against_prod_passes_and_flags_exactly_a_drifted_route(cutover: Env) -> None:
    ran_ok(cutover, "shadow", "--duration", "20s", timeout=120)
    diffs = json.loads(
        (Path(cutover["CUTOVER_VAR_DIR"]) / "reports" / "shadow-diffs.json").read_text()
    )
    verdicts = {row["route"]: row["verdict"] for row in diffs["routes"]}
    assert verdicts, diffs
    assert set(verdicts.values()) == {"pass"}, verdicts

    set_drift(cutover, "rename_price")
    try:
        ran = run_cli(cutover, "shadow", "--duration", "20s", timeout=120)
    finally:
        set_drift(cutover, "")
    assert ran.returncode == 1, ran.stdout[-3000:]
    diffs = json.loads(
        (Path(cutover["CUTOVER_VAR_DIR"]) / "reports" / "shadow-diffs.json").read_text()
    )
    failing = sorted(row["route"] for row in diffs["routes"] if row["verdict"] == "fail")
    assert failing == [f"{API}/market-data/{{symbol}}"], diffs["routes"]


@dataclass
class Writers:
    """Watchlist PUTs and registrations through the gateway, from a thread, counting every
    acknowledged write so the end can read each one back."""

    base: str
    token: str
    lists: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        symbols = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA"]
        n = 0
        with httpx.Client(base_url=self.base, timeout=15) as client:
            while not self.stop.is_set():
                n += 1
                name = f"drill-{n}"
                body = {"symbols": symbols[: 1 + n % len(symbols)]}
                try:
                    answer = client.put(
                        f"{API}/watchlists/{name}",
                        json=body,
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                    if answer.status_code in (200, 201):
                        self.lists[name] = body["symbols"]
                    else:
                        self.failed.append(f"PUT {name}: {answer.status_code}")
                    if n % 5 == 0:
                        email = f"drill-{n}-{secrets.token_hex(3)}@example.com"
                        password = secrets.token_urlsafe(12)
                        answer = client.post(
                            f"{API}/auth/register",
                            json={"email": email, "password": password, "name": "Drill"},
                        )
                        if answer.status_code == 201:
                            self.users[email] = password
                        else:
                            self.failed.append(f"register {email}: {answer.status_code}")
                except httpx.HTTPError as exc:
                    self.failed.append(f"{name}: {type(exc).__name__}")
                time.sleep(0.05)


def demo_token(base: str, env: Env) -> str:
    password = (
        read_env_file(Path(env["CUTOVER_ENV_FILE"])).get("DEMO_PASSWORD") or "demo-password-123"
    )
    answer = httpx.post(
        f"{base}{API}/auth/login", json={"email": DEMO_EMAIL, "password": password}, timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def _moved_socket(gateway_ws: str, promote: Any) -> tuple[int | None, str]:
    """A socket through the gateway, then `promote()`: its close code and the next socket's
    first message once reconnected."""
    async with websockets.connect(gateway_ws) as socket:
        await asyncio.wait_for(socket.recv(), 10)  # connection_established
        await asyncio.to_thread(promote)
        try:
            while True:
                await asyncio.wait_for(socket.recv(), 15)
        except websockets.ConnectionClosed:
            code = socket.close_code
    async with websockets.connect(gateway_ws) as again:
        first = await asyncio.wait_for(again.recv(), 10)
    return code, str(first)


def test_no_acknowledged_write_is_lost_across_the_whole_cutover(cutover: Env) -> None:
    gateway = url(cutover, "GATEWAY_PORT")
    frontend = Path(cutover["FRONTEND_ENV_FILE"])
    writers = Writers(gateway, demo_token(gateway, cutover))
    thread = threading.Thread(target=writers.run, daemon=True)
    thread.start()
    try:
        time.sleep(2)  # shadow: the mock answers, every write mirrored to prod
        ran_ok(
            cutover,
            "canary",
            *("--steps", "50,100", "--hold", "2s", "--interval", "1s", "--min-samples", "3"),
            *("--dry-run",),
            timeout=120,
        )
        # The canary ended at 100 %: every client is on prod already; promote makes it final.
        before = frontend.stat().st_mtime_ns if frontend.exists() else 0
        ran_ok(cutover, "promote", timeout=120)
        assert frontend.stat().st_mtime_ns > before
        assert read_env_file(frontend)["VITE_API_URL"] == gateway
        ws = gateway.replace("http", "ws") + "/ws"
        before = frontend.stat().st_mtime_ns
        code, first = asyncio.run(
            _moved_socket(ws, lambda: ran_ok(cutover, "rollback", timeout=120))
        )
        assert code == 1012  # the socket on prod was moved to the mock …
        assert "connection_established" in first  # … and reconnected there
        assert frontend.stat().st_mtime_ns > before
        time.sleep(1)
        ran_ok(cutover, "stop", "mock")  # the mock restarted: its memory is gone …
        ran_ok(cutover, "simple")  # … and rebuilt from PostgreSQL
        time.sleep(1)
        code, first = asyncio.run(
            _moved_socket(ws, lambda: ran_ok(cutover, "promote", timeout=120))
        )
        assert code == 1012
        assert "connection_established" in first
        time.sleep(1)
    finally:
        writers.stop.set()
        thread.join(30)
    # Writes while the mock was stopped are refused (the gateway retries them on prod only
    # when idempotent); what matters is that none that was acknowledged is missing.
    assert writers.lists, writers.failed
    assert writers.users, writers.failed
    headers = {"Authorization": f"Bearer {writers.token}"}
    missing = []
    with httpx.Client(base_url=gateway, timeout=15) as client:
        for name, symbols in writers.lists.items():
            answer = client.get(f"{API}/watchlists/{name}", headers=headers)
            assert answer.headers.get("x-gateway-upstream") == "prod"
            if answer.status_code != 200 or answer.json()["symbols"] != symbols:
                missing.append(f"{name}: {answer.status_code}")
        for email, password in writers.users.items():
            answer = client.post(f"{API}/auth/login", json={"email": email, "password": password})
            if answer.status_code != 200:
                missing.append(f"{email}: {answer.status_code}")
    assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:10]}"
    assert set(recorded_pids(cutover)) >= {"mock", "prod", "gateway"}
