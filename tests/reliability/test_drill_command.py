"""`./start.sh drill`: the list, a bad name (exit 2, naming the drills), and the result file."""

from __future__ import annotations

from tests.conftest import Env, run_cli

NAMES = (
    "prod-sigkill-during-canary",
    "postgres-stop",
    "redis-stop",
    "prod-slow",
    "gateway-restart",
    "no-data-lost",
    "soak",
)


def test_drill_list_names_every_drill(cli_env: Env) -> None:
    ran = run_cli(cli_env, "drill", "--list")
    assert ran.returncode == 0, ran.stderr
    for name in NAMES:
        assert name in ran.stdout


def test_an_unknown_drill_exits_2_naming_the_drills(cli_env: Env) -> None:
    ran = run_cli(cli_env, "drill", "no-such-drill")
    assert ran.returncode == 2
    assert "no drill 'no-such-drill'" in ran.stderr
    assert "postgres-stop" in ran.stderr
