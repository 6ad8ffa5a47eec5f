"""`./start.sh shadow` end to end: preconditions, the gateway in shadow mode, the diff gate."""

from __future__ import annotations

import json

from ops import services
from ops.settings import load_settings
from tests.conftest import Env, run_cli


def test_shadow_needs_both_backends_then_judges_the_diff_table(cli_env: Env) -> None:
    env = cli_env | {
        "PROD_PORT": str(services.free_port()),
        "GATEWAY_PORT": str(services.free_port()),
        "GATEWAY_ADMIN_PORT": str(services.free_port()),
    }
    missing = run_cli(env, "shadow")
    assert missing.returncode == 2
    assert "./start.sh simple" in missing.stderr
    assert run_cli(env, "simple").returncode == 0
    missing = run_cli(env, "shadow")
    assert missing.returncode == 2
    assert "./start.sh prod" in missing.stderr
    settings = load_settings(env)
    # A second mock plays prod: the same contract, so every route must come out equal.
    services.start_service(
        settings,
        services.mock_spec(settings, name="prod", port=settings.prod_port, admin_port=0),
    )

    judged = run_cli(env, "shadow", "--duration", "6s", "--min-samples", "15", "--threshold", "5%")
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert "/api/v1/market-data/{symbol}" in judged.stdout
    assert "shadow gate passed" in judged.stdout
    state = json.loads((settings.var_dir / "state.json").read_text())
    assert state["mode"] == "shadow"
    assert state["gates"]["shadow"]["passed"] is True
    assert (settings.reports_dir / "shadow-diffs.json").is_file()
    gateway = services.read_pid_file(settings, "gateway")
    assert gateway is not None
    assert services.is_running(gateway)  # left running for the canary

    thin = run_cli(env, "shadow", "--duration", "2s", "--rate", "5", "--min-samples", "500")
    assert thin.returncode == 1  # not enough data is never a pass
    assert "not enough data" in thin.stderr + thin.stdout
    again = run_cli(env, "shadow")
    assert again.returncode == 0
    assert "switched to shadow mode" in again.stdout
