"""`./start.sh canary`, `abort` and `resume` end to end: the mock, a second mock as prod, the
gateway started by `shadow`, and the CLI in subprocesses (a follower is stopped by its pid)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ops import services
from ops.settings import PROJECT_ROOT, OpsSettings, load_settings
from ops.state import StateStore
from tests.conftest import Env, run_cli


def follower(env: Env, *args: str) -> subprocess.Popen[str]:
    """A CLI command that follows the canary, run in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ended(process: subprocess.Popen[str], seconds: float = 30) -> tuple[int, str]:
    output, _ = process.communicate(timeout=seconds)
    return process.returncode, output


def canary_record(settings: OpsSettings) -> dict[str, Any]:
    return StateStore(settings.state_file).load().canary


def wait_canary(settings: OpsSettings, status: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record = canary_record(settings)
        if record.get("status") == status:
            return record
        time.sleep(0.1)
    raise AssertionError(f"canary never {status}: {json.dumps(canary_record(settings))[:800]}")


@pytest.fixture
def cutover(cli_env: Env) -> tuple[Env, OpsSettings]:
    """The mock (`simple`), a second mock as prod, and the gateway (`shadow`)."""
    env = cli_env | {
        "PROD_PORT": str(services.free_port()),
        "GATEWAY_PORT": str(services.free_port()),
        "GATEWAY_ADMIN_PORT": str(services.free_port()),
    }
    assert run_cli(env, "simple").returncode == 0
    settings = load_settings(env)
    services.start_service(
        settings,
        services.mock_spec(settings, name="prod", port=settings.prod_port, admin_port=0),
    )
    started = run_cli(env, "shadow")
    assert started.returncode == 0, started.stderr
    return env, settings  # cli_env stops them all by pid


def test_a_state_file_written_before_the_canary_field_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "phase": "shadow", "mode": "shadow", "weight": 0}))
    state = StateStore(path).load()
    assert (state.phase, state.canary) == ("shadow", {})
    StateStore(path).save(state)
    assert json.loads(path.read_text())["canary"] == {}


def test_canary_needs_the_gateway_and_good_options(cli_env: Env) -> None:
    missing = run_cli(cli_env, "canary")
    assert missing.returncode == 2
    assert "gateway" in missing.stderr
    assert "./start.sh shadow" in missing.stderr
    for option, value in (("--steps", "5,x"), ("--hold", "a while"), ("--success-rate", "2")):
        bad = run_cli(cli_env, "canary", option, value)
        assert bad.returncode == 2, bad.stdout
        assert option in bad.stderr
    nothing = run_cli(cli_env, "abort")
    assert nothing.returncode == 2
    assert "no canary is running" in nothing.stderr


def test_abort_resume_detach_and_the_exit_codes(cutover: tuple[Env, OpsSettings]) -> None:
    env, settings = cutover
    refused = run_cli(env, "canary", "--steps", "50,20")
    assert refused.returncode == 2
    assert "steps" in refused.stderr
    assert "rise strictly" in refused.stderr

    # Dry run, long hold: it stays at 50 % without traffic until aborted from another terminal.
    slow = ("--hold", "60s", "--interval", "500ms", "--min-samples", "1", "--dry-run")
    watching = follower(env, "canary", "--steps", "50,100", *slow)
    try:
        wait_canary(settings, "running")
        aborted = run_cli(env, "abort")  # not refused: the follower does not hold the lock
        assert aborted.returncode == 0, aborted.stderr
        code, output = ended(watching)
    finally:
        watching.kill()
    assert code == 3, output
    assert "aborted" in output
    state = StateStore(settings.state_file).load()
    assert (state.weight, state.canary["status"]) == (0, "aborted")
    assert run_cli(env, "abort").returncode == 0  # again: nothing more to do

    watching = follower(env, "resume")
    try:
        record = wait_canary(settings, "running")
        assert (record["step"], record["weight"]) == (0, 50)
        time.sleep(1.5)  # the follower shows an interval or two
        watching.send_signal(signal.SIGINT)
        code, output = ended(watching)
    finally:
        watching.kill()
    assert code == 3, output
    assert "detached" in output
    assert "goes on in the gateway" in output
    time.sleep(1)
    assert canary_record(settings)["status"] == "running"  # Ctrl-C only detached
    assert run_cli(env, "abort").returncode == 0

    done = run_cli(
        env, "canary", "--steps", "50,100", "--hold", "1s", "--interval", "500ms",
        "--min-samples", "1", "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "canary done" in done.stdout
    assert "dry-run-breach" not in done.stdout

    history = [(h.command, h.outcome) for h in StateStore(settings.state_file).load().history]
    assert ("abort", "done") in history
    assert ("resume", "interrupted") in history
    assert ("canary", "interrupted") in history
    assert history[-1] == ("canary", "done")


def test_prod_stopping_mid_canary_rolls_back_and_exits_1(
    cutover: tuple[Env, OpsSettings],
) -> None:
    env, settings = cutover
    watching = follower(
        env, "canary", "--steps", "50", "--hold", "60s", "--interval", "1s", "--min-samples", "1"
    )
    try:
        wait_canary(settings, "running")
        services.stop_service(settings, "prod", grace=2)
        code, output = ended(watching)
    finally:
        watching.kill()
    assert code == 1, output
    assert "rolled back" in output
    assert "prod does not answer its health check" in output
    state = StateStore(settings.state_file).load()
    assert (state.mode, state.weight, state.canary["status"]) == ("canary", 0, "rolled_back")
    assert state.gates["canary"]["passed"] is False
    again = run_cli(env, "canary", "--steps", "50")
    assert again.returncode == 2  # prod is down: named, not started
    assert "./start.sh prod" in again.stderr
