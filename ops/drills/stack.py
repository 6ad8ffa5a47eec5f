"""The system a drill breaks: its own embedded PostgreSQL and Redis, mock, prod (2 workers),
worker and gateway, on free loopback ports, in a temporary var dir (never the operator's var/).

Each part is brought up by the operator's own commands run as children (`python -m ops …`) in an
isolated environment, so a drill proves the commands. `running_stack()` stops every recorded
process by pid when the drill ends, however it ends (a failure, Ctrl-C or SIGTERM), and removes
the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from contract.identity import DEMO_EMAIL
from contract.universe import SYMBOLS
from ops import embedded, services
from ops.settings import PROJECT_ROOT, OpsSettings, load_settings, read_env_file

API = "/api/v1"
# Settings of the operator's shell or .env that must not reach the drill's children.
DROPPED = (
    "DATABASE_URL",
    "REDIS_URL",
    "DATABASE_ORIGIN",
    "REDIS_ORIGIN",
    "EMBEDDED_POSTGRES_PORT",
    "EMBEDDED_REDIS_PORT",
    "CUTOVER_VAR_DIR",
    "CUTOVER_ENV_FILE",
    "FRONTEND_ENV_FILE",
)
PORTS = (
    "MOCK_PORT",
    "MOCK_ADMIN_PORT",
    "PROD_PORT",
    "PROD_ADMIN_PORT",
    "GATEWAY_PORT",
    "GATEWAY_ADMIN_PORT",
    "FRONTEND_PORT",
)
# A small data load (seconds): every symbol the mock serves, so a mirrored read compares like
# with like (prod without a symbol's history differs from the mock), two years of it.
DATA_SYMBOLS = ",".join(SYMBOLS)
Say = Callable[[str], None]


class StackError(Exception):
    """A command of the drill's system failed; the message carries its output's tail."""


@dataclass
class Stack:
    """A running drill system: its environment, settings and the way to reach each part."""

    root: Path
    env: dict[str, str]
    settings: OpsSettings
    config: embedded.EmbeddedConfig
    say: Say

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """`./start.sh ARGS` in the drill's environment, output captured."""
        return subprocess.run(
            [sys.executable, "-m", "ops", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 240) -> str:
        """Run a command that must exit 0; StackError with its output otherwise."""
        began = time.monotonic()
        ran = self.cli(*args, timeout=timeout)
        took = time.monotonic() - began
        if ran.returncode != 0:
            raise StackError(
                f"./start.sh {' '.join(args)} exited {ran.returncode} after {took:.1f} s:\n"
                f"{ran.stdout[-3000:]}\n{ran.stderr[-2000:]}"
            )
        self.say(f"  ./start.sh {' '.join(args)} ({took:.1f} s)")
        return ran.stdout

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.env[port]}"

    @property
    def gateway(self) -> str:
        return self.url("GATEWAY_PORT")

    @property
    def admin(self) -> str:
        """The gateway's admin API."""
        return self.url("GATEWAY_ADMIN_PORT") + "/admin"

    @property
    def headers(self) -> dict[str, str]:
        """The admin token, as the admin APIs want it."""
        token = read_env_file(self.settings.env_file).get("ADMIN_TOKEN", "")
        return {"Authorization": f"Bearer {token}"}

    def admin_get(self, path: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.admin}{path}", headers=self.headers, timeout=10)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
        return document

    def admin_post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(f"{self.admin}{path}", json=body, headers=self.headers, timeout=60)
        if answer.status_code >= 400:
            raise StackError(f"POST /admin{path}: {answer.status_code} {answer.text[:300]}")
        document: dict[str, Any] = answer.json()
        return document

    def start_canary(self, **settings: Any) -> dict[str, Any]:
        """POST /admin/canary, then wait until prod has its first step's weight."""
        self.admin_post("/canary", settings)
        first = int(settings["steps"][0])
        self.wait(lambda: self.admin_get("/state").get("weight") == first, 30, "the first step")
        return self.admin_get("/canary")

    def wait(self, predicate: Callable[[], bool], seconds: float, what: str) -> float:
        """Poll `predicate` every 50 ms; the seconds it took, StackError past `seconds`."""
        began = time.monotonic()
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if predicate():
                    return time.monotonic() - began
            if time.monotonic() - began > seconds:
                raise StackError(f"waited {seconds:g} s for {what}; it did not happen")
            time.sleep(0.05)

    def prod_faults(self, **faults: Any) -> None:
        """Change prod's fault injection at run time (PUT /admin/faults)."""
        answer = httpx.put(
            f"{self.url('PROD_ADMIN_PORT')}/admin/faults",
            json=faults,
            headers=self.headers,
            timeout=10,
        )
        answer.raise_for_status()

    def pid(self, name: str) -> int | None:
        record = services.read_pid_file(self.settings, name)
        return record.pid if record is not None and services.is_running(record) else None

    def kill(self, name: str) -> int:
        """SIGKILL a recorded process and its group at once (no grace): a crash, not a stop."""
        pid = self.pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        # SIGKILL is delivered, not awaited: wait until the process is gone and its ports free.
        record = services.read_pid_file(self.settings, name)
        ports = [record.port] if record is not None and record.port else []
        if record is not None and "--admin-port" in record.argv:
            ports.append(int(record.argv[record.argv.index("--admin-port") + 1]))
        self.wait(
            lambda: (
                (record is None or not services.is_running(record))
                and not any(services.port_in_use("127.0.0.1", p) for p in ports)
            ),
            15,
            f"{name} (pid {pid}) to be gone",
        )
        return pid

    def stop_server(self, name: str) -> float:
        """Stop the embedded PostgreSQL or Redis; the seconds it took.

        PostgreSQL gets SIGINT, its fast shutdown (what `pg_ctl stop` does): SIGTERM would wait
        for prod's pooled sessions to end, and a SIGKILL leaves a lock file that stops the
        restart."""
        began = time.monotonic()
        record = services.read_pid_file(self.settings, name)
        if name == embedded.POSTGRES and record is not None and services.is_running(record):
            os.kill(record.pid, signal.SIGINT)
            while services.is_running(record) and time.monotonic() - began < 30:
                time.sleep(0.05)
        services.stop_service(self.settings, name, grace=10)
        return time.monotonic() - began

    def start_server(self, name: str) -> float:
        """Start the embedded server again on the same port and data; seconds it took."""
        began = time.monotonic()
        if name == embedded.POSTGRES:
            embedded.start_postgres(self.settings, self.config)
        else:
            embedded.start_redis(self.settings, self.config)
        return time.monotonic() - began

    def redis_url(self) -> str:
        return read_env_file(self.settings.env_file).get("REDIS_URL", "")

    def database_url(self) -> str:
        return read_env_file(self.settings.env_file).get("DATABASE_URL", "")

    def close(self) -> None:
        """Every recorded process stopped by pid: the services first, then the databases."""
        recorded = [r.name for r in services.pid_records(self.settings)]
        first = services.stop_order([n for n in recorded if n not in embedded_names()])
        for name in [*first, *(n for n in recorded if n not in first)]:
            with contextlib.suppress(Exception):
                services.stop_service(self.settings, name, grace=3)


def demo_token(base: str, stack: Stack) -> str:
    """The demo user's access token from the backend at `base`."""
    password = read_env_file(stack.settings.env_file).get("DEMO_PASSWORD") or "demo-password-123"
    answer = httpx.post(
        f"{base}{API}/auth/login", json={"email": DEMO_EMAIL, "password": password}, timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def embedded_names() -> tuple[str, str]:
    return (embedded.POSTGRES, embedded.REDIS)


def drill_env(root: Path) -> dict[str, str]:
    """The children's environment: var dir, .env and ports of the drill's own."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    return env | {
        "CUTOVER_VAR_DIR": str(root / "var"),
        "CUTOVER_ENV_FILE": str(root / ".env"),
        "FRONTEND_ENV_FILE": str(root / "frontend.env"),
        "EMBEDDED_POSTGRES_PORT": str(services.free_port()),
        "EMBEDDED_REDIS_PORT": str(services.free_port()),
        "CUTOVER_HEALTH_TIMEOUT": "60",
        "CUTOVER_STOP_GRACE": "5",
        "PROD_WORKERS": "2",
        "COLUMNS": "200",
        **{key: str(services.free_port()) for key in PORTS},
    }


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def running_stack(name: str, say: Say) -> Iterator[Stack]:
    """db (embedded), a small data load, mock, prod, worker and the gateway in shadow."""
    # Enterable by others (0755): an embedded PostgreSQL started by root runs as another user.
    root = Path(tempfile.mkdtemp(prefix=f"cutover-drill-{name}-"))
    root.chmod(0o755)
    env = drill_env(root)
    settings = load_settings(env)
    config = embedded.EmbeddedConfig(
        postgres_port=int(env["EMBEDDED_POSTGRES_PORT"]),
        redis_port=int(env["EMBEDDED_REDIS_PORT"]),
        database=embedded.DEFAULT_DATABASE,
        role=embedded.DEFAULT_DATABASE,
        system_user=env.get("EMBEDDED_SYSTEM_USER") or embedded.DEFAULT_SYSTEM_USER,
        postgres_port_fixed=True,
        redis_port_fixed=True,
    )
    stack = Stack(root, env, settings, config, say)
    # SIGTERM stops the drill like Ctrl-C (only the main thread may set a handler).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    began = time.monotonic()
    try:
        say(f"bringing up the drill's system under {root} …")
        stack.ok("db", "--embedded")
        stack.ok("load-data", "--symbols", DATA_SYMBOLS, "--years", "2", "--intraday-days", "5")
        stack.ok("simple")
        stack.ok("prod")
        stack.ok("worker")
        stack.ok("shadow")
        say(f"system up in {time.monotonic() - began:.1f} s")
        yield stack
    finally:
        stack.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)
