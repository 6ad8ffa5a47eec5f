"""verify-data on a real PostgreSQL: a fresh load passes; a tampered bar, a tampered indicator
or a missing row fails it with exit 1, naming the symbol, the interval and what differs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from ops import databases
from ops.settings import PROJECT_ROOT

LOAD = ("load-data", "--symbols", "AAPL,MSFT,SPY", "--years", "2", "--intraday-days", "5")


def sql(url: str, query: str, *args: Any) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(databases.libpq_url(url))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def env(cli_env: dict[str, str], database_url: str, redis_url: str) -> dict[str, str]:
    sql(database_url, "TRUNCATE load_run_symbols, load_runs, indicators, bars RESTART IDENTITY")
    return cli_env | {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


@pytest.fixture
def loaded(env: dict[str, str]) -> dict[str, str]:
    result = ops(env, *LOAD)
    assert result.returncode == 0, result.stderr
    return env


LAST_BAR = (
    "symbol = $1 AND interval = $2 AND time = "
    "(SELECT max(time) FROM bars WHERE symbol = $1 AND interval = $2)"
)


def test_a_fresh_load_verifies(loaded: dict[str, str]) -> None:
    result = ops(loaded, "verify-data", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["mismatches"] == []
    assert {(s["symbol"], s["interval"]) for s in doc["series"]} == {
        (symbol, interval) for symbol in ("AAPL", "MSFT", "SPY") for interval in ("1d", "5m")
    }
    for series in doc["series"]:
        assert series["stored"]["md5"] == series["recorded"]["md5"] == series["generator_md5"]
        assert series["stored"]["rows"] == series["recorded"]["rows"] > 0
    assert doc["indicator_values_checked"] >= 6 * 20 * 14

    text = ops(loaded, "verify-data")
    assert text.returncode == 0, text.stderr
    assert "match load runs #1" in text.stdout
    assert "next: ./start.sh prod" in text.stdout


def test_a_tampered_close_fails_with_exit_1_naming_it(
    loaded: dict[str, str], database_url: str
) -> None:
    sql(
        database_url,
        f"UPDATE bars SET close = (high + low) / 2 WHERE {LAST_BAR}",
        "MSFT",
        "1d",
    )
    result = ops(loaded, "verify-data")
    assert result.returncode == 1
    assert "MSFT 1d: checksum" in result.stderr
    assert "recorded by run #1" in result.stderr
    assert "AAPL" not in result.stderr

    doc = json.loads(ops(loaded, "verify-data", "--json").stdout)
    assert doc["ok"] is False
    bad = [s for s in doc["series"] if not s["ok"]]
    assert [(s["symbol"], s["interval"]) for s in bad] == [("MSFT", "1d")]

    # Loading again puts the row back, and the data verifies again.
    assert ops(loaded, *LOAD).returncode == 0
    assert ops(loaded, "verify-data").returncode == 0


def test_a_tampered_indicator_fails_naming_it(loaded: dict[str, str], database_url: str) -> None:
    sql(
        database_url,
        "UPDATE indicators SET rsi_14 = rsi_14 * (1 + 1e-6) WHERE symbol = 'SPY' "
        "AND interval = '5m' AND time = (SELECT max(time) FROM indicators "
        "WHERE symbol = 'SPY' AND interval = '5m')",
    )
    result = ops(loaded, "verify-data")
    assert result.returncode == 1
    assert "SPY 5m: rsi_14 at" in result.stderr
    assert "recomputed with market/" in result.stderr


def test_a_deleted_bar_fails_with_the_counts(loaded: dict[str, str], database_url: str) -> None:
    sql(database_url, f"DELETE FROM bars WHERE {LAST_BAR}", "AAPL", "1d")
    result = ops(loaded, "verify-data", "--json")
    assert result.returncode == 1
    mismatches = json.loads(result.stdout)["mismatches"]
    assert any(m.startswith("AAPL 1d: ") and "rows stored" in m for m in mismatches)
    assert any(m.startswith("AAPL 1d: ") and "indicator rows for" in m for m in mismatches)


def test_nothing_loaded_yet_is_a_missing_precondition(env: dict[str, str]) -> None:
    result = ops(env, "verify-data")
    assert result.returncode == 2
    assert "no completed load run" in result.stderr
    assert "./start.sh load-data" in result.stderr


def test_the_verdict_is_recorded_as_a_gate(loaded: dict[str, str], database_url: str) -> None:
    assert ops(loaded, "verify-data").returncode == 0
    sql(database_url, f"UPDATE bars SET volume = volume + 1 WHERE {LAST_BAR}", "SPY", "1d")
    assert ops(loaded, "verify-data").returncode == 1
    state = json.loads((Path(loaded["CUTOVER_VAR_DIR"]) / "state.json").read_text())
    gate = state["gates"]["data-verified"]
    assert gate["passed"] is False
    # The stored checksum, and the volume ratio recomputed from the changed volume.
    assert gate["mismatches"] == 2
    assert gate["detail"].startswith("2 mismatches")
    assert "SPY 1d" in gate["detail"]
    assert [h["outcome"] for h in state["history"][-2:]] == ["done", "failed"]


def test_the_loads_own_gate_counts_every_series(loaded: dict[str, str], database_url: str) -> None:
    from ops.loader.verify import check_run

    async def gate() -> list[str]:
        conn = await asyncpg.connect(databases.libpq_url(database_url))
        try:
            return await check_run(conn, 1, sample=0)
        finally:
            await conn.close()

    assert asyncio.run(gate()) == []
    sql(database_url, f"DELETE FROM indicators WHERE {LAST_BAR}", "AAPL", "5m")
    sql(database_url, f"DELETE FROM bars WHERE {LAST_BAR}", "AAPL", "5m")
    failures = asyncio.run(gate())
    assert len(failures) == 2
    assert failures[0].startswith("AAPL 5m: ")
    assert "run #1 loaded" in failures[0]
    assert "indicator rows missing" in failures[1]
