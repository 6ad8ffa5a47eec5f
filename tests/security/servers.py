"""Both backends as real servers for the drills: the mock on free ports, and prod with two workers
on a fresh PostgreSQL database (three symbols loaded) and the session's Redis db. Each writes a
log file of its own (the secrets test reads them) and is stopped by pid at the end."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ops import databases
from ops.services import free_port
from ops.settings import PROJECT_ROOT
from tests.backend.processes import Running, backend_env, start_backend
from tests.backend.stores import fill, fresh_database

API = "/api/v1"
SYMBOLS = ("AAPL", "MSFT", "SPY")
# What both servers run with: known secrets, generous API limits, small login limits a test can
# reach, and X-Forwarded-For trusted from this machine (so a test can play many addresses).
SETTINGS = {
    "RATE_LIMIT_PER_MINUTE": "100000",
    "LOGIN_LIMIT_PER_ACCOUNT": "5",
    "LOGIN_LIMIT_PER_ADDRESS": "8",
    "TRUSTED_PROXIES": "127.0.0.1",
    "WS_MAX_SUBSCRIPTIONS": "40",
    "CORS_ORIGINS": "http://localhost:3000",
}
START_SECONDS = 30.0


@dataclass
class Server:
    """One backend under test: where it answers, its admin port, its pid and log files."""

    name: str
    running: Running

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def admin_url(self) -> str:
        assert self.running.admin_url is not None
        return self.running.admin_url

    @property
    def pid(self) -> int:
        return self.running.process.pid

    def logs(self) -> str:
        """Everything the server wrote: its log file and its console output."""
        text = ""
        for path in (self.running.log, self.running.out):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text

    def healthy(self) -> bool:
        """The server still answers its health check (it did not crash or hang)."""
        try:
            return httpx.get(f"{self.url}{API}/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False


def spawn(name: str, argv: list[str], env: dict[str, str], url: str, admin_url: str) -> Running:
    """Start `argv` (it gets `--log-file`) in its own session; wait until `url` answers 200."""
    folder = Path(tempfile.mkdtemp(prefix=f"cutover-{name}-"))
    log, out = folder / f"{name}.log", folder / f"{name}.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*argv, "--log-file", str(log)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(process, url.split("/api/", 1)[0], admin_url, log, out, env)
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{running.output()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            output = running.output()
            discard(running)
            raise RuntimeError(f"{name} did not get healthy:\n{output}")
        time.sleep(0.05)


def start_mock(env: dict[str, str], host: str = "127.0.0.1") -> Running:
    """`python -m mock_backend` with its admin app, on free ports, logging to a file."""
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "mock_backend", "--host", host, "--port", str(port)]
    argv += ["--admin-port", str(admin)]
    base = f"http://{host}:{port}"
    return spawn("mock", argv, env, f"{base}{API}/health", f"http://127.0.0.1:{admin}")


def start_prod(env: dict[str, str], host: str) -> Running:
    """`python -m backend --workers 2` with its admin app on `host` (free ports)."""
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "backend", "--host", host, "--port", str(port)]
    argv += ["--workers", "2", "--admin-port", str(admin)]
    base = f"http://{host}:{port}"
    return spawn("prod", argv, env, f"{base}{API}/health", f"http://127.0.0.1:{admin}")


def start_gateway(
    env: dict[str, str], upstream: str, var: Path, host: str = "127.0.0.1"
) -> Running:
    """`python -m ops.gateway` with both upstreams at `upstream`, its state under `var`."""
    port, admin = free_port(), free_port()
    env = env | {
        "MOCK_URL": upstream,
        "PROD_URL": upstream,
        "CUTOVER_VAR_DIR": str(var),
        "CUTOVER_ENV_FILE": str(var / "none.env"),
    }
    argv = [sys.executable, "-m", "ops.gateway", "--host", host, "--port", str(port)]
    argv += ["--admin-port", str(admin)]
    base = f"http://{host}:{port}"
    return spawn("gateway", argv, env, f"{base}{API}/health", f"http://127.0.0.1:{admin}")


def discard(running: Running) -> None:
    """Stop a started server by pid and remove its log folder."""
    running.stop()
    shutil.rmtree(running.log.parent, ignore_errors=True)


@contextlib.contextmanager
def both_backends(
    postgres_server_url: str, redis_url: str, **extra: str
) -> Iterator[dict[str, Server]]:
    """The mock and prod (two workers), same secrets and settings; stopped by pid afterwards."""
    url, name = fresh_database(postgres_server_url, "cutover_drills")
    env = backend_env(url, redis_url, **SETTINGS, **extra)
    started: list[Running] = []
    try:
        fill(url, SYMBOLS)
        started.append(start_mock(env))
        started.append(start_backend(env, workers=2))
        yield {"mock": Server("mock", started[0]), "prod": Server("prod", started[1])}
    finally:
        for running in started:
            discard(running)
        databases.drop_database(postgres_server_url, name)


def still_running(server: Server) -> bool:
    """The server's pid (and, for prod, its supervisor) has not exited."""
    return server.running.process.poll() is None


@dataclass
class Account:
    """A user registered and logged in for a test."""

    email: str
    password: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def fresh_address() -> str:
    """A client address of its own (sent as X-Forwarded-For, trusted from loopback): the servers'
    per-address login limit is small and shared by every test using them, so a user who logs in
    must not share an address with the tests that guess passwords."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def new_account(server: Server, tag: str = "drill") -> Account:
    """Register a fresh user (unique email, random password) and log it in, from its own address."""
    email = f"{tag}-{uuid.uuid4().hex[:12]}@example.com"
    password = f"pw-{secrets.token_urlsafe(12)}"
    headers = {"X-Forwarded-For": fresh_address()}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as http:
        made = http.post(
            f"{API}/auth/register", json={"email": email, "password": password, "name": tag}
        )
        assert made.status_code == 201, made.text
        pair = http.post(f"{API}/auth/login", json={"email": email, "password": password})
        assert pair.status_code == 200, pair.text
        tokens = pair.json()
    return Account(email, password, tokens["access_token"], tokens["refresh_token"])
