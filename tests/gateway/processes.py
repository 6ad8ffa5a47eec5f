"""Real processes for the gateway's tests: two mocks (one playing prod; same contract) and
gateways on free ports, each stopped by its pid at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.services import free_port
from ops.settings import PROJECT_ROOT

ADMIN_TOKEN = "gateway-test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_KEY = "g" * 64


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    url: str
    admin: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait(proc: Proc, probes: list[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    for probe in probes:
        while True:
            if proc.process.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"{probe} did not answer")
            try:
                httpx.get(probe, timeout=1, headers=AUTH)
                break
            except httpx.TransportError:
                time.sleep(0.05)


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "LOG_LEVEL": "WARNING",
        "FAULT_LATENCY_MS": "0",
        "FAULT_ERROR_RATE": "0",
        "FAULT_DRIFT": "",
        "FAULT_REFUSE": "false",
        **extra,
    }


def start_mock() -> Proc:
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "mock_backend", "--port", str(port), "--admin-port", str(admin)]
    process = subprocess.Popen(argv, env=_env(), cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    proc = Proc(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
    _wait(proc, [f"{proc.admin}/admin/faults", f"{proc.url}/api/v1/health"])
    return proc


def set_faults(mock: Proc, **faults: object) -> None:
    answer = httpx.put(f"{mock.admin}/admin/faults", json=faults, headers=AUTH, timeout=5)
    answer.raise_for_status()


@dataclass
class Backends:
    mock: Proc
    prod: Proc


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    mock = start_mock()
    try:
        prod = start_mock()
    except BaseException:
        mock.stop()
        raise
    try:
        yield Backends(mock, prod)
    finally:
        prod.stop()
        mock.stop()


@pytest.fixture(autouse=True)
def _faults_off(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "backends" in request.fixturenames:
        both: Backends = request.getfixturevalue("backends")
        for mock in (both.mock, both.prod):
            if mock.process.poll() is None:
                set_faults(mock, latency_ms=0, drift="", error_rate=0)


GatewayFactory = Callable[..., Proc]


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start a gateway on free ports with its state under tmp_path (same var dir each call)."""
    started: list[Proc] = []

    def start(mock_url: str, prod_url: str, *extra: str) -> Proc:
        port, admin = free_port(), free_port()
        env = _env(
            MOCK_URL=mock_url,
            PROD_URL=prod_url,
            CUTOVER_VAR_DIR=str(tmp_path / "var"),
            CUTOVER_ENV_FILE=str(tmp_path / "none.env"),
        )
        argv = [
            sys.executable, "-m", "ops.gateway", "--port", str(port), "--admin-port", str(admin),
            "--log-file", str(tmp_path / "gateway.log"), *extra,
        ]  # fmt: skip
        process = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
        proc = Proc(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
        started.append(proc)
        _wait(proc, [f"{proc.admin}/admin/state"])
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


def set_mode(gateway: Proc, **change: object) -> dict[str, object]:
    answer = httpx.put(f"{gateway.admin}/admin/mode", json=change, headers=AUTH, timeout=5)
    answer.raise_for_status()
    result: dict[str, object] = answer.json()
    return result
