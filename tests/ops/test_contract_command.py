"""`./start.sh contract` end to end against real mock processes on loopback, and its rules.

The suite and Schemathesis run against a mock started on a free port; a read-only run is shown
to send no write (the mock's own request counters say so); `--target both` lists what two
backends answer differently. Every process is stopped by pid afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ops import services, verify
from ops.settings import PROJECT_ROOT, load_settings
from tests.conftest import Env
from tests.conftest import run_cli as ops

SECRET_KEY = "contract-command-secret-key-0123456789abcdef0123456789"
ADMIN_TOKEN = "contract-command-admin-token-0123"
MOCK_ENV = {
    "SECRET_KEY": SECRET_KEY,
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "DEMO_PASSWORD": "demo-password-123",
    "LOG_LEVEL": "WARNING",
    # The contract's floor: the suite's rate-limit case drives a user past it, sooner.
    "RATE_LIMIT_PER_MINUTE": "600",
    "FAULT_LATENCY_MS": "0",
    "FAULT_ERROR_RATE": "0",
    "FAULT_DRIFT": "",
    "FAULT_REFUSE": "false",
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Mock:
    url: str
    admin_url: str


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    root = tmp_path_factory.mktemp("contract-mock")
    settings = load_settings(
        {"CUTOVER_VAR_DIR": str(root / "var"), "CUTOVER_ENV_FILE": str(root / ".env")}
    )
    admin = services.free_port()
    spec = services.mock_spec(
        settings, name="contract-mock", port=services.free_port(), admin_port=admin
    )
    with services.temporary_service(settings, spec, env=MOCK_ENV) as started:
        yield Mock(str(started.record.url), f"http://127.0.0.1:{admin}")


@pytest.fixture
def env(cli_env: Env) -> Env:
    return cli_env | {
        "CONTRACT_SECRET_KEY": SECRET_KEY,
        "CONTRACT_DEMO_PASSWORD": "demo-password-123",
    }


def report_folder(env: Env) -> Path:
    folders = sorted((Path(env["CUTOVER_VAR_DIR"]) / "reports").glob("contract-*"))
    assert folders, "no report folder was written"
    return folders[-1]


def summary(env: Env) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((report_folder(env) / "summary.json").read_text())
    return document


def writes_seen(url: str) -> dict[str, float]:
    """The server's own count of answered writes, by method and route (Prometheus)."""
    counts: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if not line.startswith("litestar_requests_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        method = labels.split('method="')[1].split('"')[0]
        path = labels.split('path="')[1].split('"')[0]
        if method in WRITES:
            key = f"{method} {path}"
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def test_the_contract_suite_passes_on_a_running_mock(env: Env, mock: Mock) -> None:
    ran = ops(env, "contract", "--target", mock.url, "--no-fuzz", timeout=240)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "contract holds" in ran.stdout
    suite = summary(env)["suites"][0]
    assert suite["failed"] == 0
    assert suite["errors"] == 0
    assert suite["passed"] > 200
    junit = ET.parse(report_folder(env) / suite["junit"]).getroot()
    assert junit.iter("testcase")
    status = json.loads(ops(env, "status", "--json").stdout)
    assert status["gates"]["contract-url"]["passed"] is True


def test_schemathesis_passes_on_a_running_mock(env: Env, mock: Mock) -> None:
    ran = ops(env, "contract", "--target", mock.url, "--no-suite", "--examples", "3")
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    fuzz = summary(env)["schemathesis"]
    assert fuzz["seed"] == 42
    assert fuzz["cases"]["url"] > 50
    for check in verify.CHECK_NAMES:
        assert fuzz["checks"]["url"][check]["examples"] == fuzz["cases"]["url"]
        assert fuzz["checks"]["url"][check]["failures"] == 0
    junit = ET.parse(report_folder(env) / "schemathesis.xml").getroot()
    names = {case.get("name") for case in junit.iter("testcase")}
    assert "GET /api/v1/market-data/{symbol} · response_schema_conformance" in names


def test_the_same_seed_replays_the_same_cases(env: Env, mock: Mock) -> None:
    runs = []
    for _ in range(2):
        ops(env, "contract", "--target", mock.url, "--no-suite", "--examples", "2", "--read-only")
        runs.append(summary(env)["schemathesis"]["cases"])
    assert runs[0] == runs[1]


def test_a_read_only_run_sends_no_write(env: Env, mock: Mock) -> None:
    before = writes_seen(mock.url)
    ran = ops(env, "contract", "--target", mock.url, "--no-suite", "--read-only", "--examples", "3")
    assert "read-only (--read-only)" in ran.stdout
    fuzz = summary(env)["schemathesis"]
    assert "PUT /api/v1/watchlists/{name}" in fuzz["left_out"]
    assert "POST /api/v1/backtests" in fuzz["left_out"]
    assert "POST /api/v1/market-data/quotes" in fuzz["operations"]

    guarded = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/contract/test_contract_watchlists.py",
         "-q", "-p", "no:cacheprovider", "-p", "ops.verify"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CONTRACT_BASE_URL": mock.url, verify.READ_ONLY_ENV: "1"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert guarded.returncode == 0, guarded.stdout[-3000:]
    assert "skipped" in guarded.stdout
    assert "passed" not in guarded.stdout.splitlines()[-1]

    after = writes_seen(mock.url)
    sent = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    # Quotes are a read with a body; the suite logs the demo user in (a session, no data).
    assert set(sent) <= {"POST /api/v1/market-data/quotes", "POST /api/v1/auth/login"}, sent


def test_both_lists_every_disagreement(env: Env) -> None:
    settings = load_settings(env)
    admin = services.free_port()
    for name, admin_port in (("mock", 0), ("prod", admin)):
        spec = services.mock_spec(
            settings, name=name, port=services.free_port(), admin_port=admin_port
        )
        services.start_service(settings, spec, env=MOCK_ENV)  # stopped by cli_env, by pid

    same = ops(env, "contract", "--target", "both", "--no-suite", "--examples", "2")
    assert "read-only (production" in same.stdout  # "prod" is never written to unasked
    assert summary(env)["schemathesis"]["disagreements"] == [], same.stdout[-3000:]

    drift = httpx.put(
        f"http://127.0.0.1:{admin}/admin/faults",
        json={"drift": "alter_price"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )
    assert drift.status_code == 200
    differs = ops(env, "contract", "--target", "both", "--no-suite", "--examples", "2")
    assert differs.returncode == 1
    found = summary(env)["schemathesis"]["disagreements"]
    quotes = [d for d in found if d["operation"] == "GET /api/v1/market-data/{symbol}"]
    assert quotes, found
    assert any(line.startswith("$.price:") for line in quotes[0]["differences"])
    assert "≠ GET /api/v1/market-data/{symbol}" in differs.stdout
    assert "disagreements between the backends" in differs.stderr


def test_a_server_that_is_not_running_is_named_with_its_command(env: Env) -> None:
    mock = ops(env, "contract", "--target", "mock")
    assert mock.returncode == 2
    assert "the mock is not running" in mock.stderr
    assert "./start.sh simple" in mock.stderr
    prod = ops(env, "contract", "--target", "prod")
    assert prod.returncode == 2
    assert "./start.sh prod" in prod.stderr
    nothing = ops(env, "contract", "--target", "http://127.0.0.1:9", "--no-suite")
    assert nothing.returncode == 2


def test_bad_usage_is_refused(env: Env, mock: Mock) -> None:
    neither = ops(env, "contract", "--target", mock.url, "--no-suite", "--no-fuzz")
    assert neither.returncode == 2
    both_ways = ops(env, "contract", "--target", mock.url, "--read-only", "--allow-writes")
    assert both_ways.returncode == 2


def test_writes_reach_production_only_on_a_scratch_database() -> None:
    assert verify.write_policy("mock", False, {})[0] is True
    assert verify.write_policy("production", False, {})[0] is False
    scratch = {"DATABASE_URL": "postgresql+asyncpg://u:p@127.0.0.1:5432/cutover_test_1a2b"}
    assert verify.write_policy("production", True, scratch)[0] is True
    assert verify.is_scratch("scratch_cutover")
    for url in ("postgresql://u@127.0.0.1/cutover", ""):
        with pytest.raises(verify.PreconditionError):
            verify.write_policy("production", True, {"DATABASE_URL": url})


def test_reads_are_gets_quotes_and_the_demo_login() -> None:
    assert verify.write_of("GET", "/api/v1/watchlists") is None
    assert verify.write_of("POST", "/api/v1/market-data/quotes") is None
    assert verify.write_of("POST", "/api/v1/auth/login") is None
    assert verify.write_of("POST", "/api/v1/backtests") is not None
    assert verify.write_of("PUT", "/api/v1/watchlists/x") is not None
    assert verify.write_of("POST", "/api/v1/signals/generate") is not None


def answer(status: int, body: Any, media: str = "application/json") -> SimpleNamespace:
    return SimpleNamespace(
        status_code=status,
        headers={"content-type": [media]},
        json=lambda: body,
        content=json.dumps(body).encode(),
    )


def test_comparison_ignores_only_the_backends_own_values() -> None:
    quote = {"symbol": "SPY", "price": 101.5, "previous_close": 100.0, "timestamp": "a"}
    later = {**quote, "timestamp": "b"}
    assert (
        verify.compare("GET /api/v1/market-data/{symbol}", answer(200, quote), answer(200, later))
        == []
    )
    moved = {**quote, "price": 102.5}
    assert verify.compare(
        "GET /api/v1/market-data/{symbol}", answer(200, quote), answer(200, moved)
    ) == ["$.price: 101.5 ≠ 102.5"]
    health = {"status": "ok", "backend": "mock", "version": "1", "checks": {}, "data": {"seed": 1}}
    other = {**health, "backend": "production", "checks": {"database": "ok"}, "data": {"seed": 2}}
    assert verify.compare("GET /api/v1/health", answer(200, health), answer(200, other)) == [
        "$.data.seed: 1 ≠ 2"
    ]
    assert verify.compare("GET /x", answer(200, {}), answer(404, {})) == ["status 200 ≠ 404"]
    signal = {"signals": [{"id": "SPY-1d-1", "timestamp": "2026-11-20T00:00:00.000Z"}]}
    shifted = {"signals": [{"id": "SPY-1d-1", "timestamp": "2026-11-19T00:00:00.000Z"}]}
    assert verify.compare("GET /api/v1/signals/{symbol}", answer(200, signal), answer(200, shifted))
    assert verify.differences({"a": [1, 2]}, {"a": [1], "b": True}) == [
        "$.a: 2 items ≠ 1 items",
        "$.b: only in the second",
    ]
