"""The operator's CLI end to end, in subprocesses, against a real mock on free ports.

Every run points CUTOVER_VAR_DIR and CUTOVER_ENV_FILE into a temporary directory, so the
project's own var/ and .env are never touched; every process a test starts is stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ops import services
from ops.settings import PROJECT_ROOT
from ops.state import LockInfo, pid_alive, process_start_ticks
from tests.conftest import Env
from tests.conftest import run_cli as ops


def status(env: Env) -> dict[str, Any]:
    result = ops(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def process(doc: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(p for p in doc["processes"] if p["name"] == name)
    return entry


def sleeper() -> subprocess.Popen[bytes]:
    """A harmless live process that is not ours to stop."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.fixture
def env(cli_env: Env) -> Env:
    """A CLI environment isolated in tmp_path, with the mock on free ports (see conftest)."""
    return cli_env


def test_simple_starts_the_mock_and_stop_stops_it_by_pid(env: Env) -> None:
    port = env["MOCK_PORT"]
    started = ops(env, "simple")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"the mock is up at http://127.0.0.1:{port}" in started.stdout
    assert "next: ./start.sh status" in started.stdout
    assert Path(env["CUTOVER_ENV_FILE"]).is_file()  # the first run wrote .env

    doc = status(env)
    mock = process(doc, "mock")
    assert mock["alive"] is True
    assert mock["port"] == int(port)
    assert mock["health"]["ok"] is True
    assert doc["phase"] == "simple"
    assert doc["history"][-1]["command"] == "simple"
    assert doc["history"][-1]["outcome"] == "done"
    pid = mock["pid"]

    again = ops(env, "simple")
    assert again.returncode == 0, again.stderr
    assert f"already runs at http://127.0.0.1:{port} (pid {pid})" in again.stdout
    assert process(status(env), "mock")["pid"] == pid

    shown = ops(env, "logs", "mock", "-n", "5")
    assert shown.returncode == 0, shown.stderr
    assert 1 <= len(shown.stdout.splitlines()) <= 5

    stopped = ops(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"mock (pid {pid}) stopped" in stopped.stdout
    assert not pid_alive(pid)
    assert not (Path(env["CUTOVER_VAR_DIR"]) / "run" / "mock.pid").exists()
    after = status(env)
    assert process(after, "mock")["alive"] is False
    assert [h["command"] for h in after["history"]] == ["simple", "simple", "stop"]


def test_a_mock_that_cannot_start_fails_the_gate_showing_why(env: Env) -> None:
    failed = ops({**env, "QUOTE_FEED": "not-a-feed"}, "simple")
    assert failed.returncode == 1
    assert "before answering its health check" in failed.stderr
    assert "QUOTE_FEED" in failed.stderr  # the mock's own complaint, from its output
    assert "./start.sh logs mock" in failed.stderr
    assert not (Path(env["CUTOVER_VAR_DIR"]) / "run" / "mock.pid").exists()
    assert not services.port_in_use("127.0.0.1", int(env["MOCK_PORT"]))
    doc = status(env)
    assert doc["history"][-1]["outcome"] == "failed"
    assert doc["gates"]["mock-health"]["passed"] is False


def test_a_second_state_changing_command_exits_2_naming_the_holder(env: Env) -> None:
    holder = sleeper()
    try:
        lock = Path(env["CUTOVER_VAR_DIR"]) / "cutover.lock"
        lock.parent.mkdir(parents=True)
        info = LockInfo(
            pid=holder.pid,
            command="canary",
            started_at="2026-11-21T10:00:00.000Z",
            proc_start=process_start_ticks(holder.pid),
        )
        lock.write_bytes(msgspec.json.encode(info))

        refused = ops(env, "simple")
        assert refused.returncode == 2
        assert f"`canary` (pid {holder.pid}" in refused.stderr
        assert not (Path(env["CUTOVER_VAR_DIR"]) / "run" / "mock.pid").exists()
        assert status(env)["lock"]["command"] == "canary"
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: the next command takes the lock over.
    taken = ops(env, "stop")
    assert taken.returncode == 0, taken.stderr
    assert "took over a stale lock" in taken.stderr


def test_setup_writes_env_with_generated_secrets_and_keeps_an_existing_one(env: Env) -> None:
    first = ops(env, "setup")
    assert first.returncode == 0, first.stdout + first.stderr
    env_file = Path(env["CUTOVER_ENV_FILE"])
    values = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line[:1].isalpha()
    )
    assert len(values["SECRET_KEY"]) >= 32
    assert len(values["ADMIN_TOKEN"]) >= 32
    assert values["DEMO_PASSWORD"] == "demo-password-123"
    assert env_file.stat().st_mode & 0o777 == 0o600

    before = env_file.read_text()
    second = ops(env, "setup")
    assert second.returncode == 0
    assert "kept the existing" in second.stdout
    assert env_file.read_text() == before
    assert status(env)["phase"] == "setup"


def test_stop_only_removes_a_pid_file_whose_process_is_not_ours(env: Env) -> None:
    bystander = sleeper()
    try:
        run_dir = Path(env["CUTOVER_VAR_DIR"]) / "run"
        run_dir.mkdir(parents=True)
        # The pid is alive but runs something else (a recycled pid): it must not be signalled.
        record = services.PidRecord(
            pid=bystander.pid,
            name="mock",
            module="mock_backend",
            argv=["python", "-m", "mock_backend"],
            started_at="2026-11-21T10:00:00.000Z",
        )
        (run_dir / "mock.pid").write_bytes(msgspec.json.encode(record))
        result = ops(env, "stop")
        assert result.returncode == 0, result.stderr
        assert "removed its stale pid file" in result.stdout
        assert not (run_dir / "mock.pid").exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_port_held_by_a_foreign_process_is_a_missing_precondition(
    env: Env, tmp_path: Path
) -> None:
    port = env["MOCK_PORT"]
    foreign = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not services.port_in_use("127.0.0.1", int(port)):
            assert time.monotonic() < deadline, "the stand-in server did not start"
            time.sleep(0.05)
        result = ops(env, "simple")
        assert result.returncode == 2
        assert f"port {port}" in result.stderr
        assert foreign.poll() is None  # never stopped: it is not ours
        assert status(env)["history"][-1]["outcome"] == "refused"
    finally:
        foreign.terminate()
        foreign.wait()


def test_missing_logs_and_bad_usage_exit_2_with_the_way_forward(env: Env) -> None:
    missing = ops(env, "logs", "mock")
    assert missing.returncode == 2
    assert "./start.sh simple" in missing.stderr
    assert ops(env, "logs", "nosuch").returncode == 2
    assert ops(env, "status", "--no-such-option").returncode == 2
    fresh = ops(env, "status")
    assert fresh.returncode == 0
    assert "phase new" in fresh.stdout


def test_ctrl_c_during_a_command_exits_3(env: Env, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    slow_test = tmp_path / "test_slow.py"
    slow_test.write_text(
        "import pathlib, time\n\n\n"
        "def test_slow() -> None:\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    time.sleep(60)\n"
    )
    running = subprocess.Popen(
        [sys.executable, "-m", "ops", "test", str(slow_test), "-p", "no:cacheprovider"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the slow test never started"
            time.sleep(0.05)
        os.killpg(running.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert running.wait(timeout=30) == 3
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait()


def test_bench_measures_its_own_mock_and_saves_the_figures(env: Env) -> None:
    result = ops(env, "bench", "market-data", "--count", "100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "p50 ms" in result.stdout
    report = json.loads(
        (Path(env["CUTOVER_VAR_DIR"]) / "reports" / "bench-market-data.json").read_text()
    )
    assert report["count"] == 100
    assert report["errors"] == 0
    assert report["status_counts"] == {"200": 100}
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["requests_per_second"] > 0
    assert 0 < report["mock_start_seconds"] < 30
    # Its own mock was stopped by pid afterwards.
    assert not list((Path(env["CUTOVER_VAR_DIR"]) / "run").glob("*.pid"))
