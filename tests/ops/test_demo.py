"""`./start.sh demo` end to end, as a user runs it after cloning: every stage of the cutover on
real processes (a fresh database, its own Redis db, free ports, an isolated var dir), then the
figures a reader checks: each stage passed and timed, the report says PASS, the frontend env
file points at the gateway, the rollback drill read back both writes from the mock, and `stop`
leaves nothing running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ops import services
from ops.frontend_env import frontend_target
from ops.state import pid_alive
from tests.conftest import Env, run_cli
from tests.ops.conftest import recorded_pids

pytestmark = pytest.mark.demo

STAGES = (
    "setup",
    "db",
    "load-data",
    "mock",
    "prod",
    "worker",
    "gateway (shadow)",
    "contract",
    "shadow gate",
    "load test",
    "drill: a write before promotion",
    "canary",
    "promote",
    "drill: a write after promotion",
    "rollback",
    "drill: every write after the rollback",
    "report",
)


def test_the_demo_runs_the_whole_cutover_and_says_pass(
    cli_env: Env, scratch_url: str, redis_url: str
) -> None:
    var = Path(cli_env["CUTOVER_VAR_DIR"])
    env = cli_env | {
        "DATABASE_URL": scratch_url,
        "REDIS_URL": redis_url,
        "PROD_PORT": str(services.free_port()),
        "PROD_ADMIN_PORT": str(services.free_port()),
        "GATEWAY_PORT": str(services.free_port()),
        "GATEWAY_ADMIN_PORT": str(services.free_port()),
        "FRONTEND_PORT": str(services.free_port()),
        "FRONTEND_ENV_FILE": str(var.parent / "frontend.env"),
        "PROD_WORKERS": "2",
        "CUTOVER_HEALTH_TIMEOUT": "60",
    }
    began = time.monotonic()
    ran = run_cli(env, "demo", timeout=900)
    seconds = time.monotonic() - began
    shown = f"exit {ran.returncode} in {seconds:.0f} s\n{ran.stdout[-12000:]}\n{ran.stderr[-4000:]}"
    pids = recorded_pids(env)
    try:
        assert ran.returncode == 0, shown
        summary = json.loads((var / "reports" / "demo.json").read_text())
        assert summary["passed"] is True, shown
        names = [stage["name"] for stage in summary["stages"]]
        assert names == list(STAGES), names
        assert all(stage["code"] == 0 for stage in summary["stages"]), summary["stages"]
        assert all(stage["seconds"] > 0 for stage in summary["stages"])
        assert "demo PASS" in ran.stdout
        report = (var / "reports" / "cutover-report.md").read_text()
        assert "PASS" in report.split("\n## ")[0], report[:2000]
        assert frontend_target(Path(env["FRONTEND_ENV_FILE"])) == (
            f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        )
        state = json.loads((var / "state.json").read_text())
        assert state["mode"] == "mock"
        assert state["phase"] == "rolled-back"
        assert [h["command"] for h in state["history"] if h["outcome"] != "done"] == []
        assert sorted((var / "backups").glob("pre-promote-*.dump")), "no pg_dump taken"
        assert {"mock", "prod", "worker", "gateway"} <= set(pids)
    finally:
        stopped = run_cli(env, "stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
