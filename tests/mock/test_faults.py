"""Fault injection on a real mock process: off by default, set at start-up and at run time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ops import services

ADMIN_TOKEN = "fault-test-admin-token"


def free_port() -> int:
    return services.free_port()


@dataclass
class Mock:
    process: subprocess.Popen[bytes]
    url: str
    admin: str
    started_in: float


def start_mock(**env: str) -> Mock:
    port, admin_port = free_port(), free_port()
    environment = {
        **os.environ,
        "SECRET_KEY": "f" * 64,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "LOG_LEVEL": "WARNING",
        "FAULT_LATENCY_MS": "0",
        "FAULT_ERROR_RATE": "0",
        "FAULT_DRIFT": "",
        "FAULT_REFUSE": "false",
        **env,
    }
    began = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mock_backend",
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    deadline = began + 30
    for probe in (f"{admin}/admin/faults", f"{url}/api/v1/health"):
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
            try:
                httpx.get(probe, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
    return Mock(process, url, admin, time.monotonic() - began)


def stop(mock: Mock) -> None:
    mock.process.terminate()
    try:
        mock.process.wait(10)
    except subprocess.TimeoutExpired:
        mock.process.kill()
        mock.process.wait(10)


@pytest.fixture
def mock() -> Iterator[Mock]:
    server = start_mock()
    try:
        yield server
    finally:
        stop(server)


def admin_put(mock: Mock, **faults: object) -> httpx.Response:
    return httpx.put(
        f"{mock.admin}/admin/faults",
        json=faults,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )


def test_faults_are_off_by_default(mock: Mock) -> None:
    answer = httpx.get(f"{mock.url}/api/v1/market-data/SPY", timeout=5)
    assert answer.status_code == 200
    assert "price" in answer.json()
    state = httpx.get(
        f"{mock.admin}/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    assert state == {"latency_ms": 0, "error_rate": 0.0, "drift": "", "refuse": False}


def test_admin_wants_the_token(mock: Mock) -> None:
    assert httpx.get(f"{mock.admin}/admin/faults").status_code == 401
    wrong = httpx.put(
        f"{mock.admin}/admin/faults", json={"latency_ms": 5}, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    assert admin_put(mock, drift="nonsense").status_code == 400


def test_latency_error_rate_and_drift_at_run_time(mock: Mock) -> None:
    url = f"{mock.url}/api/v1/market-data/SPY"
    assert admin_put(mock, latency_ms=300).status_code == 200
    began = time.monotonic()
    assert httpx.get(url, timeout=5).status_code == 200
    assert time.monotonic() - began >= 0.3

    assert admin_put(mock, latency_ms=0, error_rate=1.0).status_code == 200
    failed = httpx.get(url, timeout=5)
    assert failed.status_code == 500
    assert failed.json()["detail"].startswith("Injected fault")
    assert httpx.get(f"{mock.url}/api/v1/health", timeout=5).status_code == 200

    assert admin_put(mock, error_rate=0.0, drift="rename_price").status_code == 200
    drifted = httpx.get(url, timeout=5).json()
    assert "price" not in drifted
    assert "last_price" in drifted

    assert admin_put(mock, drift="").status_code == 200
    assert "price" in httpx.get(url, timeout=5).json()


def test_refusing_connections_and_coming_back(mock: Mock) -> None:
    url = f"{mock.url}/api/v1/health"
    assert admin_put(mock, refuse=True).json()["refuse"] is True
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    assert admin_put(mock, refuse=False).json()["refuse"] is False
    assert httpx.get(url, timeout=5).status_code == 200


def test_faults_set_at_start_up() -> None:
    server = start_mock(FAULT_ERROR_RATE="1", FAULT_DRIFT="drop_volume")
    try:
        answer = httpx.get(f"{server.url}/api/v1/market-data/SPY", timeout=5)
        assert answer.status_code == 500
        state = httpx.get(
            f"{server.admin}/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert state["error_rate"] == 1.0
        assert state["drift"] == "drop_volume"
    finally:
        stop(server)


def test_a_bad_fault_setting_stops_start_up_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mock_backend", "--port", str(free_port())],
        env={**os.environ, "FAULT_ERROR_RATE": "2"},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"FAULT_ERROR_RATE" in result.stderr
