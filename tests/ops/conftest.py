"""Fixtures of the phase tests: a scratch database of the test's own, and the CLI's pid files."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import databases
from tests.conftest import Env, run_cli


@pytest.fixture
def scratch_url(postgres_server_url: str) -> Iterator[str]:
    """A database of this test's own; its name is one the contract command calls scratch."""
    name = f"cutover_test_{secrets.token_hex(4)}"
    databases.create_database(postgres_server_url, name)
    try:
        yield databases.with_database(postgres_server_url, name)
    finally:
        databases.drop_database(postgres_server_url, name)


def recorded_pids(env: Env) -> dict[str, int]:
    run_dir = Path(env["CUTOVER_VAR_DIR"]) / "run"
    return {path.stem: int(json.loads(path.read_text())["pid"]) for path in run_dir.glob("*.pid")}


def ran_ok(env: Env, *args: str, timeout: float = 90) -> str:
    """Run a command, assert it exited 0, and return its output."""
    started = time.monotonic()
    ran = run_cli(env, *args, timeout=timeout)
    shown = f"$ ./start.sh {' '.join(args)} → exit {ran.returncode} in "
    shown += f"{time.monotonic() - started:.1f} s\n{ran.stdout[-6000:]}\n{ran.stderr[-4000:]}"
    assert ran.returncode == 0, shown
    return ran.stdout
