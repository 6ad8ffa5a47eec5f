"""`./start.sh loadtest` end to end: Locust against a real mock process on loopback.

The gates pass on a healthy mock and FAIL (exit 1, naming the gate) when the mock's fault
injection adds latency or errors, so the gates are proven able to fail. Runs are short (6 s
measured) and modest (30 requests/s); every process is stopped by pid afterwards.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.gates import RunResult, decode_result
from ops import services
from ops.settings import load_settings
from tests.conftest import Env
from tests.conftest import run_cli as ops

ADMIN_TOKEN = "loadtest-admin-token-0123456789"
MOCK_ENV = {
    "SECRET_KEY": "loadtest-secret-key-0123456789abcdef0123456789abcdef",
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_PER_MINUTE": "1200",
    "FAULT_LATENCY_MS": "0",
    "FAULT_ERROR_RATE": "0",
    "FAULT_DRIFT": "",
    "FAULT_REFUSE": "false",
}
RUN = ("--users", "6", "--rate", "30", "--duration", "6s", "--warmup", "3s", "--ws-users", "1")


@dataclass(frozen=True)
class Mock:
    url: str
    admin_url: str

    def faults(self, **change: Any) -> None:
        answer = httpx.put(
            f"{self.admin_url}/admin/faults",
            json=change,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    """A mock of this module's own on free ports, with its fault admin; stopped by pid."""
    root = tmp_path_factory.mktemp("loadtest-mock")
    settings = load_settings(
        {"CUTOVER_VAR_DIR": str(root / "var"), "CUTOVER_ENV_FILE": str(root / ".env")}
    )
    admin = services.free_port()
    spec = services.mock_spec(
        settings, name="loadtest-mock", port=services.free_port(), admin_port=admin
    )
    with services.temporary_service(settings, spec, env=MOCK_ENV) as started:
        yield Mock(str(started.record.url), f"http://127.0.0.1:{admin}")


@pytest.fixture
def faulty(mock: Mock) -> Iterator[Mock]:
    """The module's mock; whatever faults a test injects are off again afterwards."""
    try:
        yield mock
    finally:
        mock.faults(latency_ms=0, error_rate=0.0)


@pytest.fixture
def env(cli_env: Env) -> Env:
    # Heartbeats every 2 s, so that a short run shows them too.
    return cli_env | {"LOADTEST_WS_HEARTBEAT_S": "2"}


def run_folder(env: Env) -> Path:
    folders = sorted((Path(env["CUTOVER_VAR_DIR"]) / "reports").glob("loadtest-*"))
    assert folders, "no report folder was written"
    return folders[-1]


def result_of(env: Env) -> RunResult:
    return decode_result((run_folder(env) / "url.json").read_bytes())


def test_a_healthy_mock_passes_the_gates_and_websocket_figures_are_recorded(
    env: Env, mock: Mock
) -> None:
    ran = ops(env, "loadtest", "--target", mock.url, *RUN)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "url: passed" in ran.stdout
    result = result_of(env)
    assert result.passed
    assert [g.name for g in result.gates if not g.passed] == []
    assert result.achieved_rate >= 27
    routes = {f"{r.method} {r.name}": r for r in result.routes}
    assert routes["GET /api/v1/market-data/[symbol]"].requests > 100
    for name in ("WS /ws connect", "WS /ws subscribe", "WS /ws heartbeat", "WS /ws push interval"):
        assert routes[name].requests >= 1, name
    assert routes["WS /ws push interval"].p50 >= 500  # the feed ticks once a second

    folder = run_folder(env)
    with (folder / "url_stats.csv").open() as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    assert int(rows[("WS", "/ws connect")]["Request Count"]) >= 1
    assert (folder / "url.html").stat().st_size > 0
    for plot in ("latency.png", "throughput.png"):
        assert (folder / plot).read_bytes().startswith(b"\x89PNG")

    status = json.loads(ops(env, "status", "--json").stdout)
    assert status["gates"]["loadtest-url"]["passed"] is True


def test_added_latency_fails_the_p95_gate(env: Env, faulty: Mock) -> None:
    faulty.faults(latency_ms=150)
    ran = ops(env, "loadtest", "--target", faulty.url, *RUN)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "load test gates failed" in ran.stderr
    assert "p95 overall" in ran.stderr
    overall = next(g for g in result_of(env).gates if g.name == "p95 overall")
    assert not overall.passed
    assert overall.value is not None
    assert overall.value >= 150


def test_injected_errors_fail_the_failure_gate(env: Env, faulty: Mock) -> None:
    faulty.faults(error_rate=0.05)
    ran = ops(env, "loadtest", "--target", faulty.url, *RUN)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "failures" in ran.stderr
    failures = next(g for g in result_of(env).gates if g.name == "failures")
    assert not failures.passed
    assert failures.value is not None
    assert 0.01 < failures.value < 0.15


def test_a_gateway_that_is_not_running_is_named_with_its_command(env: Env) -> None:
    ran = ops(env, "loadtest", "--target", "gateway")
    assert ran.returncode == 2
    assert "the gateway is not running" in ran.stderr
    assert "./start.sh shadow" in ran.stderr


def test_a_backend_that_is_not_running_is_named_with_its_command(env: Env) -> None:
    ran = ops(env, "loadtest", "--target", "mock")
    assert ran.returncode == 2
    assert "the mock is not running" in ran.stderr
    assert "./start.sh simple" in ran.stderr
    both = ops(env, "loadtest", "--target", "both")
    assert both.returncode == 2


def test_load_goes_only_to_this_machine(env: Env) -> None:
    ran = ops(env, "loadtest", "--target", "http://192.0.2.10:8001")
    assert ran.returncode == 2
    assert "only against 127.0.0.1" in ran.stderr


def test_a_pace_over_the_per_user_limit_is_refused_before_loading(env: Env, mock: Mock) -> None:
    ran = ops(env, "loadtest", "--target", mock.url, "--users", "1", "--rate", "100")
    assert ran.returncode == 2
    assert "raise --users" in ran.stderr
