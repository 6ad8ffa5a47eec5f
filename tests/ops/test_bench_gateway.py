"""`./start.sh bench gateway`: one run measures the mock directly and through the gateway in
direct and shadow mode, and saves the figures a reader compares."""

from __future__ import annotations

import json
from pathlib import Path

from ops.services import pid_records
from ops.settings import load_settings
from tests.conftest import Env, run_cli


def test_bench_gateway_compares_direct_and_both_gateway_modes(cli_env: Env) -> None:
    result = run_cli(cli_env, "bench", "gateway", "--count", "300", timeout=240)
    # 1 = a latency target missed on a busy machine; the figures are saved either way.
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(
        (Path(cli_env["CUTOVER_VAR_DIR"]) / "reports" / "bench-gateway.json").read_text()
    )
    names = [case["name"] for case in report["cases"]]
    assert names == [
        "direct to the mock",
        "gateway, direct mode",
        "gateway, shadow mode",
        "gateway, shadow mode, candidate slowed by 2 s",
    ]
    assert report["capacity_rps"] > 0
    assert abs(report["rate"] - report["capacity_rps"] / 2) <= 1  # half, rounded
    for case in report["cases"]:
        assert case["requests"] == 300
        assert case["errors"] == 0, case["statuses"]
        assert 0 < case["p50_ms"] <= case["p90_ms"] <= case["p99_ms"] <= case["max_ms"]
        assert case["client_cpu_ms_per_request"] > 0
    direct, gateway, shadow, slow = report["cases"]
    assert direct["gateway_cpu_ms_per_request"] is None
    assert gateway["gateway_cpu_ms_per_request"] > 0
    assert shadow["shadow"]["sent"] > 0
    assert slow["errors"] == 0
    figures = report["slow_candidate"]
    assert figures["ratio"] == round(figures["p95_ms_slow_candidate"] / shadow["p95_ms"], 3)
    assert "candidate slowed by 2 s" in result.stdout
    added = report["added"]["gateway, direct mode"]
    assert added["p50_ms"] == round(gateway["p50_ms"] - direct["p50_ms"], 3)
    within = (
        added["p50_ms"] <= report["targets"]["direct_mode_added_p50_ms"]
        and added["p99_ms"] <= report["targets"]["direct_mode_added_p99_ms"]
    )
    assert report["passed"] == within
    assert (result.returncode == 0) == within
    assert "gateway, shadow mode" in result.stdout
    # Everything it started was stopped by pid.
    assert pid_records(load_settings(cli_env)) == []
