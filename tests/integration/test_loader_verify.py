"""verify-data on a real PostgreSQL: a fresh load passes; a tampered bar, a tampered indicator
or a missing row fails it with exit 1, naming the symbol, the interval and what differs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from ops import databases
from tests.conftest import Env
from tests.integration.conftest import cli, sql

LOAD = ("load-data", "--symbols", "AAPL,MSFT,SPY", "--years", "2", "--intraday-days", "5")


@pytest.fixture
def loaded(loader_env: Env) -> Env:
    result = cli(loader_env, *LOAD)
    assert result.returncode == 0, result.stderr
    return loader_env


LAST_BAR = (
    "symbol = $1 AND interval = $2 AND time = "
    "(SELECT max(time) FROM bars WHERE symbol = $1 AND interval = $2)"
)


def test_a_fresh_load_verifies(loaded: Env) -> None:
    result = cli(loaded, "verify-data", "--json")
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

    text = cli(loaded, "verify-data")
    assert text.returncode == 0, text.stderr
    assert "match load runs #1" in text.stdout
    assert "next: ./start.sh prod" in text.stdout


def test_a_tampered_close_fails_with_exit_1_naming_it(loaded: Env, database_url: str) -> None:
    sql(
        database_url,
        f"UPDATE bars SET close = (high + low) / 2 WHERE {LAST_BAR}",
        "MSFT",
        "1d",
    )
    result = cli(loaded, "verify-data")
    assert result.returncode == 1
    assert "MSFT 1d: checksum" in result.stderr
    assert "recorded by run #1" in result.stderr
    assert "AAPL" not in result.stderr

    doc = json.loads(cli(loaded, "verify-data", "--json").stdout)
    assert doc["ok"] is False
    bad = [s for s in doc["series"] if not s["ok"]]
    assert [(s["symbol"], s["interval"]) for s in bad] == [("MSFT", "1d")]

    # Loading again puts the row back, and the data verifies again.
    assert cli(loaded, *LOAD).returncode == 0
    assert cli(loaded, "verify-data").returncode == 0


def test_a_tampered_indicator_fails_naming_it(loaded: Env, database_url: str) -> None:
    sql(
        database_url,
        "UPDATE indicators SET rsi_14 = rsi_14 * (1 + 1e-6) WHERE symbol = 'SPY' "
        "AND interval = '5m' AND time = (SELECT max(time) FROM indicators "
        "WHERE symbol = 'SPY' AND interval = '5m')",
    )
    result = cli(loaded, "verify-data")
    assert result.returncode == 1
    assert "SPY 5m: rsi_14 at" in result.stderr
    assert "recomputed with market/" in result.stderr


def test_a_deleted_bar_fails_with_the_counts(loaded: Env, database_url: str) -> None:
    sql(database_url, f"DELETE FROM bars WHERE {LAST_BAR}", "AAPL", "1d")
    result = cli(loaded, "verify-data", "--json")
    assert result.returncode == 1
    mismatches = json.loads(result.stdout)["mismatches"]
    assert any(m.startswith("AAPL 1d: ") and "rows stored" in m for m in mismatches)
    assert any(m.startswith("AAPL 1d: ") and "indicator rows for" in m for m in mismatches)


def test_nothing_loaded_yet_is_a_missing_precondition(loader_env: Env) -> None:
    result = cli(loader_env, "verify-data")
    assert result.returncode == 2
    assert "no completed load run" in result.stderr
    assert "./start.sh load-data" in result.stderr


def test_the_verdict_is_recorded_as_a_gate(loaded: Env, database_url: str) -> None:
    assert cli(loaded, "verify-data").returncode == 0
    sql(database_url, f"UPDATE bars SET volume = volume + 1 WHERE {LAST_BAR}", "SPY", "1d")
    assert cli(loaded, "verify-data").returncode == 1
    state = json.loads((Path(loaded["CUTOVER_VAR_DIR"]) / "state.json").read_text())
    gate = state["gates"]["data-verified"]
    assert gate["passed"] is False
    # The stored checksum, and the volume ratio recomputed from the changed volume.
    assert gate["mismatches"] == 2
    assert gate["detail"].startswith("2 mismatches")
    assert "SPY 1d" in gate["detail"]
    assert [h["outcome"] for h in state["history"][-2:]] == ["done", "failed"]


def test_the_loads_own_gate_counts_every_series(loaded: Env, database_url: str) -> None:
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


def test_a_load_that_fails_its_checks_never_goes_live(
    loader_env: Env, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ops.cli import app
    from ops.loader import run

    real_checks = run._post_checks

    async def tampered_then_checked(conn: asyncpg.Connection, run_id: int) -> list[str]:
        # Something changes the data between the load's writes and its checks.
        await conn.execute(f"DELETE FROM bars WHERE {LAST_BAR}", "AAPL", "1d")
        return await real_checks(conn, run_id)

    monkeypatch.setattr(run, "_post_checks", tampered_then_checked)
    result = CliRunner().invoke(app, list(LOAD), env=loader_env)
    assert result.exit_code == 1, result.output
    (first,) = sql(database_url, "SELECT id, status, counts->>'error' AS error FROM load_runs")
    assert first["status"] == "failed"
    assert "checks failed" in first["error"]
    # Readers take the latest done run: there is none, so nothing of it is served or verified.
    unverified = cli(loader_env, "verify-data")
    assert unverified.returncode == 2
    assert "no completed load run" in unverified.stderr

    monkeypatch.setattr(run, "_post_checks", real_checks)
    again = cli(loader_env, *LOAD, "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["resumed"] is False
    assert doc["counts"]["inserted"] == 1
    assert cli(loader_env, "verify-data").returncode == 0
