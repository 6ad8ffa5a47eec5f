"""`./start.sh contract --target both` on the two real backends, the way an operator gets there:
`db` on a fresh database, `load-data`, `simple`, `prod`, `worker`, then the contract run on both;
`stop` afterwards leaves nothing running. Every command is the CLI in a subprocess with an
isolated var dir and .env.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ops import services
from ops.state import pid_alive
from tests.conftest import Env, leftovers, run_cli
from tests.ops.conftest import ran_ok, recorded_pids


def test_the_contract_holds_on_both_real_backends(
    cli_env: Env, scratch_url: str, redis_url: str
) -> None:
    env = cli_env | {
        "DATABASE_URL": scratch_url,
        "REDIS_URL": redis_url,
        "PROD_PORT": str(services.free_port()),
        "PROD_ADMIN_PORT": str(services.free_port()),
        "PROD_WORKERS": "2",
        "CUTOVER_HEALTH_TIMEOUT": "60",
    }
    started: dict[str, int] = {}
    try:
        ran_ok(env, "db")
        ran_ok(env, "load-data", timeout=180)
        ran_ok(env, "simple")
        ran_ok(env, "prod")
        ran_ok(env, "worker")
        started = recorded_pids(env)
        assert set(started) == {"mock", "prod", "worker"}

        both = ran_ok(env, "contract", "--target", "both", "--examples", "5", timeout=240)
        assert "mock: http://" in both
        assert "prod: http://" in both
        assert "(production; read-only" in both
        assert "mock and prod: contract holds" in both
        assert "≠" not in both  # no disagreement listed
        folders = sorted((Path(env["CUTOVER_VAR_DIR"]) / "reports").glob("contract-*"))
        summary = json.loads((folders[-1] / "summary.json").read_text())
        assert {s["target"] for s in summary["suites"]} == {"mock", "prod"}
        assert all(s["passed"] > 0 and s["failed"] == s["errors"] == 0 for s in summary["suites"])
        assert summary["schemathesis"]["disagreements"] == []
        assert summary["schemathesis"]["compared"] > 0
    finally:
        if not started:
            with contextlib.suppress(OSError, ValueError, KeyError):
                started = recorded_pids(env)
        stopped = run_cli(env, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert recorded_pids(env) == {}
    assert [name for name, pid in started.items() if pid_alive(pid)] == []
    assert leftovers(Path(env["CUTOVER_VAR_DIR"]), set(started.values())) == []
