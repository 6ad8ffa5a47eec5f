"""A load killed in the middle (kill -9) and started again completes with the counts of a run
that was never interrupted, skipping the symbols the killed run had committed.

CUTOVER_LOAD_PAUSE_AFTER=N makes the loader commit N symbols, then hold the next one uncommitted
and sleep: the test checks the partial state there, kills the loader's process group, restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from ops import databases
from ops.settings import PROJECT_ROOT
from tests.conftest import Env
from tests.integration.conftest import cli, sql, wipe

SYMBOLS = ("AAPL", "GLD", "MSFT", "SPY", "TSLA")
ARGS = ("--symbols", ",".join(SYMBOLS), "--years", "3", "--intraday-days", "10", "--json")
PAUSE_AFTER = 2


def without_timing(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts.items() if k != "seconds"}


def wait_for_line(stream: Any, marker: str, seconds: float) -> str:
    """The first line of `stream` containing `marker`, read in a thread (never blocks longer)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within {seconds} s; stderr was:\n{''.join(seen)}")


def test_a_killed_load_resumes_and_ends_with_the_counts_of_a_clean_run(
    loader_env: Env, database_url: str
) -> None:
    clean = cli(loader_env, "load-data", *ARGS)
    assert clean.returncode == 0, clean.stderr
    reference = json.loads(clean.stdout)
    stored_clean = sql(database_url, "SELECT count(*) AS n FROM bars")[0]["n"]
    wipe(database_url)

    paused = subprocess.Popen(
        [sys.executable, "-m", "ops", "load-data", *ARGS],
        env=loader_env | {"CUTOVER_LOAD_PAUSE_AFTER": str(PAUSE_AFTER)},
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = wait_for_line(paused.stderr, "paused after", 120)
        assert f"paused after {PAUSE_AFTER} symbols" in line

        (run,) = sql(database_url, "SELECT id, status FROM load_runs")
        assert run["status"] == "running"
        done = [r["symbol"] for r in sql(database_url, "SELECT symbol FROM load_run_symbols")]
        assert len(done) == PAUSE_AFTER
        loaded = sql(database_url, "SELECT DISTINCT symbol FROM bars ORDER BY 1")
        assert [r["symbol"] for r in loaded] == sorted(done)
        indicators = sql(database_url, "SELECT DISTINCT symbol FROM indicators ORDER BY 1")
        assert [r["symbol"] for r in indicators] == sorted(done)
    finally:
        # The loader and its worker processes: the group this test started, by its id.
        os.killpg(paused.pid, signal.SIGKILL)
        paused.wait(timeout=30)
    assert paused.returncode == -signal.SIGKILL

    resumed = cli(loader_env, "load-data", *ARGS)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["resumed"] is True
    assert doc["run_id"] == run["id"]
    assert doc["resumed_symbols"] == PAUSE_AFTER
    assert doc["attempt"]["symbols"] == len(SYMBOLS) - PAUSE_AFTER
    assert without_timing(doc["counts"]) == without_timing(reference["counts"])
    assert doc["message"].startswith(f"resumed run #{run['id']} ({PAUSE_AFTER} symbols done")

    (final,) = sql(database_url, "SELECT status FROM load_runs")
    assert final["status"] == "done"
    assert sql(database_url, "SELECT count(*) AS n FROM bars")[0]["n"] == stored_clean
    assert len(sql(database_url, "SELECT symbol FROM load_run_symbols")) == len(SYMBOLS)

    verified = cli(loader_env, "verify-data", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def test_no_resume_starts_a_new_run(loader_env: Env, database_url: str) -> None:
    first = cli(loader_env, "load-data", "--symbols", "AAPL", "--years", "1", "--json")
    assert first.returncode == 0, first.stderr
    sql(database_url, "UPDATE load_runs SET status = 'failed'")
    again = cli(
        loader_env, "load-data", "--symbols", "AAPL", "--years", "1", "--json", "--no-resume"
    )
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["resumed"] is False
    assert doc["run_id"] != json.loads(first.stdout)["run_id"]
    assert doc["changed"] is False


def test_a_second_loader_on_the_same_database_is_refused(
    loader_env: Env, database_url: str
) -> None:
    from ops.loader.runs import LOADER_LOCK_KEY

    async def holding() -> subprocess.CompletedProcess[str]:
        conn = await asyncpg.connect(databases.libpq_url(database_url))
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", LOADER_LOCK_KEY)
            return await asyncio.to_thread(cli, loader_env, "load-data", "--symbols", "AAPL")
        finally:
            await conn.close()

    result = asyncio.run(holding())
    assert result.returncode == 2
    assert "another load-data is writing to this database" in result.stderr
    assert sql(database_url, "SELECT count(*) AS n FROM load_runs")[0]["n"] == 0


def test_an_unfinished_run_is_not_resumed_over_a_later_finished_one(database_url: str) -> None:
    from datetime import date

    from ops.loader import runs
    from ops.loader.sources import SourceInfo

    info = SourceInfo(kind="synthetic", detail=None, seed=42, adjusted=False)
    asof = date(2026, 11, 20)
    old_params = {"symbols": ["AAPL", "MSFT"], "years": 3}
    new_params = {"symbols": ["AAPL"], "years": 1}

    async def scenario() -> tuple[runs.RunRow, runs.RunRow, runs.RunRow, runs.RunRow]:
        conn = await asyncpg.connect(databases.libpq_url(database_url))
        try:
            old = await runs.start(conn, info, asof, old_params, resume=True)
            # Started again with nothing finished since: the unfinished run continues.
            again = await runs.start(conn, info, asof, old_params, resume=True)
            newer = await runs.start(conn, info, asof, new_params, resume=True)
            await runs.finish(conn, newer.id, {}, [], [])
            # Now a later run has finished: resuming the old one would put it over the newer.
            after = await runs.start(conn, info, asof, old_params, resume=True)
            return old, again, newer, after
        finally:
            await conn.close()

    wipe(database_url)
    old, again, newer, after = asyncio.run(scenario())
    assert (again.id, again.resumed) == (old.id, True)
    assert after.resumed is False
    assert after.id not in (old.id, newer.id)
    rows = {
        r["id"]: r
        for r in sql(
            database_url, "SELECT id, status, counts->'superseded_by' AS by FROM load_runs"
        )
    }
    assert rows[old.id]["status"] == "failed"
    assert json.loads(rows[old.id]["by"]) == after.id
    assert rows[newer.id]["status"] == "done"
    assert rows[after.id]["status"] == "running"
