"""Real processes for the browser tests, each on a free port and stopped by its pid: the
dashboard's static server, mocks, a production backend and a gateway, with CORS_ORIGINS set to
the dashboard's origins (both 127.0.0.1 and localhost)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ops.frontend_env import point_frontend
from ops.services import free_port
from ops.settings import PROJECT_ROOT
from tests.gateway.processes import AUTH, Proc, _env, _wait

# What a developer's shell may carry that must not reach these processes.
DROPPED = ("DATABASE_URL", "REDIS_URL", "CUTOVER_VAR_DIR", "FRONTEND_ENV_FILE", "CUTOVER_ENV_FILE")


def origins(port: int) -> str:
    """CORS_ORIGINS for a dashboard served on `port`, opened as 127.0.0.1 or as localhost."""
    return f"http://127.0.0.1:{port},http://localhost:{port}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in _env().items() if key not in DROPPED}
    env.update(extra)
    return env


def _spawn(argv: list[str], env: dict[str, str], url: str, admin: str, probes: list[str]) -> Proc:
    process = subprocess.Popen(
        argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    proc = Proc(process, url, admin)
    _wait(proc, probes)
    return proc


def start_mock(frontend_port: int) -> Proc:
    """A mock whose CORS lets the dashboard on `frontend_port` in."""
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "mock_backend", "--port", str(port), "--admin-port", str(admin)]
    env = clean_env(CORS_ORIGINS=origins(frontend_port))
    url, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    return _spawn(argv, env, url, admin_url, [f"{admin_url}/admin/faults", f"{url}/api/v1/health"])


@contextmanager
def frontend(env_file: Path, var_dir: Path, port: int) -> Iterator[str]:
    """`python -m ops.frontend_server` on `port`, its env file `env_file`; yields its URL."""
    env = clean_env(
        FRONTEND_ENV_FILE=str(env_file),
        CUTOVER_VAR_DIR=str(var_dir),
        CUTOVER_ENV_FILE=str(var_dir / "none.env"),
    )
    argv = [sys.executable, "-m", "ops.frontend_server", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    proc = _spawn(argv, env, url, url, [f"{url}/health"])
    try:
        yield url
    finally:
        proc.stop()


@contextmanager
def gateway(mock_url: str, prod_url: str, var_dir: Path, env_file: Path) -> Iterator[Proc]:
    """A gateway in front of the two, state under `var_dir`; promote and rollback rewrite
    `env_file` (pointed at the gateway first, as the cutover does)."""
    port, admin = free_port(), free_port()
    env = clean_env(
        MOCK_URL=mock_url,
        PROD_URL=prod_url,
        CUTOVER_VAR_DIR=str(var_dir),
        CUTOVER_ENV_FILE=str(var_dir / "none.env"),
        FRONTEND_ENV_FILE=str(env_file),
        MOCK_ADMIN_PORT="0",
    )
    argv = [
        sys.executable, "-m", "ops.gateway", "--port", str(port), "--admin-port", str(admin),
        "--log-file", str(var_dir / "gateway.log"),
    ]  # fmt: skip
    admin_url = f"http://127.0.0.1:{admin}"
    proc = _spawn(argv, env, f"http://127.0.0.1:{port}", admin_url, [f"{admin_url}/admin/state"])
    point_frontend(env_file, proc.url)
    try:
        yield proc
    finally:
        proc.stop()


def set_weight(gateway_proc: Proc, weight: int) -> dict[str, object]:
    """PUT /admin/mode {mode: canary, weight}: what an operator stepping by hand sends."""
    answer = httpx.put(
        f"{gateway_proc.admin}/admin/mode",
        json={"mode": "canary", "weight": weight},
        headers=AUTH,
        timeout=10,
    )
    answer.raise_for_status()
    document: dict[str, object] = answer.json()
    return document
