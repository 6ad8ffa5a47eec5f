"""The production backend (and its backtest worker) as real processes on free ports, started by a
test and stopped by pid afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ops.services import free_port
from ops.settings import PROJECT_ROOT

SECRET_KEY = "backend-tests-secret-key-0123456789abcdef0123456789"
ADMIN_TOKEN = "backend-tests-admin-token"
DEMO_PASSWORD = "demo-password-123"
START_SECONDS = 60.0
# What a developer's shell or .env may carry that must not reach a test's server.
DROPPED = (
    "DATABASE_URL",
    "REDIS_URL",
    "PROMETHEUS_MULTIPROC_DIR",
    "SENTRY_DSN",
    "CUTOVER_ENV_FILE",
)


def backend_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a test's backend: its databases, known secrets, no faults."""
    env = {key: value for key, value in os.environ.items() if key not in DROPPED}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": SECRET_KEY,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "DEMO_PASSWORD": DEMO_PASSWORD,
            "MARKET_SEED": "42",
            "QUOTE_FEED": "simulated",
            "LOG_LEVEL": "INFO",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "FAULT_LATENCY_MS": "0",
            "FAULT_ERROR_RATE": "0",
            "FAULT_DRIFT": "",
            "FAULT_REFUSE": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Running:
    """A process a test started: its pid, where it listens, and its output."""

    process: subprocess.Popen[bytes]
    url: str
    admin_url: str | None
    log: Path
    out: Path
    env: dict[str, str] = field(repr=False)

    def output(self, lines: int = 60) -> str:
        text = ""
        for path in (self.out, self.log):
            with contextlib.suppress(OSError):
                text += f"--- {path.name}\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-lines:]
                )
        return text

    def stop(self, grace: float = 25.0) -> int | None:
        """SIGTERM to the pid (the supervisor stops its workers), SIGKILL to its group after."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def _spawn(
    argv: list[str], env: Mapping[str, str], name: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"cutover-{name}-"))
    log, out = folder / f"{name}.log", folder / f"{name}.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*argv, "--log-file", str(log)],
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log, out


def start_backend(
    env: Mapping[str, str],
    workers: int = 2,
    admin: bool = True,
    healthy: bool = True,
    port: int | None = None,
) -> Running:
    """`python -m backend` on free ports (or `port`: a restart where clients expect it); waits
    for a 200 from /health (or any answer when `healthy` is off: a backend whose database is
    down answers 503)."""
    port = port or free_port()
    admin_port = free_port() if admin else 0
    argv = [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--admin-port", str(admin_port)]
    process, log, out = _spawn(argv, env, "backend")
    running = Running(
        process=process,
        url=f"http://127.0.0.1:{port}",
        admin_url=f"http://127.0.0.1:{admin_port}" if admin else None,
        log=log,
        out=out,
        env=dict(env),
    )
    deadline = time.monotonic() + START_SECONDS
    seen: set[str] = set()  # the workers that answered: wait for all of them
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the backend exited with {process.returncode}:\n{running.output()}")
        try:
            answer = fresh_connection_get(f"{running.url}/api/v1/health", timeout=2)
            if answer.status_code == 200 or not healthy:
                seen.add(answer.headers["x-worker"])
                if len(seen) == workers:
                    return running
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"the backend did not get healthy:\n{running.output()}")
        time.sleep(0.02)


def start_worker(env: Mapping[str, str]) -> Running:
    """`python -m backend.worker` (the backtest jobs)."""
    process, log, out = _spawn([sys.executable, "-m", "backend.worker"], env, "worker")
    time.sleep(0.5)
    running = Running(process=process, url="", admin_url=None, log=log, out=out, env=dict(env))
    if process.poll() is not None:
        raise RuntimeError(f"the worker exited with {process.returncode}:\n{running.output()}")
    return running


@contextlib.contextmanager
def backend(env: Mapping[str, str], workers: int = 2, admin: bool = True) -> Iterator[Running]:
    running = start_backend(env, workers, admin)
    try:
        yield running
    finally:
        running.stop()


# No kept-alive connections: every request opens its own, so the kernel may hand it to any worker.
FRESH = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def fresh_connection_get(url: str, **kwargs: object) -> httpx.Response:
    """One GET on a new connection."""
    return FRESH.get(url, **kwargs)  # type: ignore[arg-type]
