"""load-data with the synthetic source on a real PostgreSQL: the stored bars and indicators are
the generator's and market/'s, a second run changes nothing and says so, a changed row is put
back, and the cached market data of the loaded symbols is invalidated in Redis.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from backend.db.cache import market_key
from market.bars import Bars
from market.calendar import DEFAULT_ASOF
from market.history import daily_history, intraday_history
from market.indicators import INDICATOR_NAMES, compute_indicators
from ops import databases, services
from ops.loader.run import LoadOptions, load
from ops.loader.sources import epoch_of
from tests.conftest import Env
from tests.integration.conftest import cli, sql

SYMBOLS = ("AAPL", "MSFT", "SPY")
YEARS = 2
INTRADAY_DAYS = 5
SMALL = ("--symbols", ",".join(SYMBOLS), "--years", str(YEARS), "--intraday-days", "5")


def expected(symbol: str) -> tuple[Bars, Bars]:
    """What the mock serves for the loaded window: the generator's bars."""
    full = daily_history(42, symbol, DEFAULT_ASOF)
    start = epoch_of(date(DEFAULT_ASOF.year - YEARS, DEFAULT_ASOF.month, DEFAULT_ASOF.day))
    daily = full.take(slice(int(np.searchsorted(full.time, start)), None))
    return daily, intraday_history(42, symbol, DEFAULT_ASOF, INTRADAY_DAYS)


def stored_bars(url: str, symbol: str, interval: str) -> Bars:
    rows = sql(
        url,
        "SELECT extract(epoch FROM time)::int8 AS t, open, high, low, close, volume FROM bars "
        "WHERE symbol = $1 AND interval = $2 ORDER BY time",
        symbol,
        interval,
    )
    return Bars(
        time=np.array([r["t"] for r in rows], dtype=np.int64),
        open=np.array([r["open"] for r in rows]),
        high=np.array([r["high"] for r in rows]),
        low=np.array([r["low"] for r in rows]),
        close=np.array([r["close"] for r in rows]),
        volume=np.array([r["volume"] for r in rows], dtype=np.int64),
    )


def stored_indicators(url: str, symbol: str, interval: str) -> dict[str, np.ndarray[Any, Any]]:
    rows = sql(
        url,
        f"SELECT {', '.join(INDICATOR_NAMES)} FROM indicators "
        "WHERE symbol = $1 AND interval = $2 ORDER BY time",
        symbol,
        interval,
    )
    return {
        name: np.array([np.nan if r[name] is None else r[name] for r in rows])
        for name in INDICATOR_NAMES
    }


def test_synthetic_load_stores_exactly_the_generators_bars_and_indicators(loader_db: str) -> None:
    report = load(LoadOptions(symbols=SYMBOLS, years=YEARS, intraday_days=INTRADAY_DAYS))

    daily_total = intraday_total = 0
    for symbol in SYMBOLS:
        daily, intraday = expected(symbol)
        daily_total += len(daily)
        intraday_total += len(intraday)
        for interval, bars in (("1d", daily), ("5m", intraday)):
            stored = stored_bars(loader_db, symbol, interval)
            for field in ("time", "open", "high", "low", "close", "volume"):
                assert np.array_equal(getattr(stored, field), getattr(bars, field)), (
                    symbol,
                    interval,
                    field,
                )
            indicators = stored_indicators(loader_db, symbol, interval)
            frame = compute_indicators(bars)
            for name in INDICATOR_NAMES:
                assert np.array_equal(indicators[name], getattr(frame, name), equal_nan=True), (
                    symbol,
                    interval,
                    name,
                )
    assert intraday_total == len(SYMBOLS) * 5 * 78  # 2026-11-16 to 11-20: five sessions
    counts = report.counts
    assert (counts["daily_rows"], counts["intraday_rows"]) == (daily_total, intraday_total)
    assert counts["inserted"] == daily_total + intraday_total
    assert (counts["updated"], counts["unchanged"], counts["skipped"]) == (0, 0, 0)
    assert counts["indicators_inserted"] == daily_total + intraday_total
    assert report.check_failures == []

    (run,) = sql(loader_db, "SELECT * FROM load_runs")
    assert (run["status"], run["source"], run["seed"], run["asof"], run["adjusted"]) == (
        "done",
        "synthetic",
        42,
        DEFAULT_ASOF,
        False,
    )
    assert json.loads(run["params"])["symbols"] == list(SYMBOLS)
    assert set(json.loads(run["checksums"])) == set(SYMBOLS)
    done = sql(
        loader_db, "SELECT symbol, daily_rows, intraday_rows FROM load_run_symbols ORDER BY 1"
    )
    assert [(r["symbol"], r["daily_rows"] + r["intraday_rows"]) for r in done] == [
        (s, len(expected(s)[0]) + len(expected(s)[1])) for s in SYMBOLS
    ]


def test_a_second_run_changes_nothing_and_says_so(loader_env: Env) -> None:
    first = cli(loader_env, "load-data", *SMALL, "--json")
    assert first.returncode == 0, first.stderr
    loaded = json.loads(first.stdout)
    assert loaded["changed"] is True
    assert loaded["counts"]["inserted"] == loaded["rows"] > 0

    second = cli(loader_env, "load-data", *SMALL, "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["changed"] is False
    assert (again["counts"]["inserted"], again["counts"]["updated"]) == (0, 0)
    assert (again["counts"]["indicators_inserted"], again["counts"]["indicators_updated"]) == (0, 0)
    assert again["counts"]["unchanged"] == loaded["rows"]
    assert again["message"].startswith("nothing changed")
    assert again["run_id"] != loaded["run_id"]

    text = cli(loader_env, "load-data", *SMALL)
    assert text.returncode == 0, text.stderr
    assert "nothing changed" in text.stdout
    assert "0 inserted, 0 updated" in text.stdout
    assert "next: ./start.sh verify-data" in text.stdout


def test_a_changed_row_is_put_back_and_counted_as_updated(loader_db: str) -> None:
    options = LoadOptions(symbols=("MSFT",), years=YEARS, intraday_days=INTRADAY_DAYS)
    load(options)
    sql(
        loader_db,
        "UPDATE bars SET close = low WHERE symbol = 'MSFT' AND interval = '1d' AND time = "
        "(SELECT max(time) FROM bars WHERE symbol = 'MSFT' AND interval = '1d')",
    )
    report = load(options)
    assert (report.counts["inserted"], report.counts["updated"]) == (0, 1)
    assert report.counts["indicators_updated"] == 0
    daily, _ = expected("MSFT")
    assert stored_bars(loader_db, "MSFT", "1d").close[-1] == daily.close[-1]


def test_the_loaded_symbols_cached_market_data_is_invalidated(
    loader_db: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        loaded_keys = [market_key("AAPL", "historical", "1y", "1d"), market_key("SPY", "quote")]
        kept = market_key("TSLA", "historical", "1y", "1d")
        for key in [*loaded_keys, kept, "cache:user:1"]:
            client.set(key, "{}")
        report = load(LoadOptions(symbols=SYMBOLS, years=1, intraday_days=0))
        assert report.cache.deleted == 2
        assert report.cache.warning is None
        assert client.exists(*loaded_keys) == 0
        assert client.exists(kept, "cache:user:1") == 2
    finally:
        client.close()


def test_redis_down_is_a_warning_not_a_failure(loader_env: Env) -> None:
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    result = cli(loader_env | {"REDIS_URL": dead}, "load-data", "--symbols", "AAPL", "--years", "1")
    assert result.returncode == 0, result.stderr
    assert "did not answer" in result.stdout
    assert "may be stale" in result.stdout


def test_without_a_database_url_it_exits_2_and_names_the_db_command(
    cli_env: Env,
) -> None:
    result = cli(cli_env, "load-data", "--symbols", "AAPL")
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
    assert "./start.sh db" in result.stderr


def test_a_database_that_does_not_answer_exits_2_naming_it(cli_env: Env, database_url: str) -> None:
    missing = databases.with_database(database_url, "cutover_no_such_database")
    result = cli(cli_env | {"DATABASE_URL": missing}, "load-data", "--symbols", "AAPL")
    assert result.returncode == 2
    assert "cutover_no_such_database" in result.stderr
    assert "does not answer" in result.stderr


def test_an_unknown_source_exits_2_saying_what_is_accepted(loader_env: Env) -> None:
    result = cli(loader_env, "load-data", "--source", "polygon")
    assert result.returncode == 2
    assert "no networked provider is implemented" in result.stderr
    result = cli(loader_env, "load-data", "--source", "ftp:somewhere")
    assert result.returncode == 2
    assert "accepted synthetic or csv:FOLDER" in result.stderr


def test_market_seed_and_asof_come_from_the_environment(loader_env: Env, loader_db: str) -> None:
    result = cli(
        loader_env | {"MARKET_SEED": "7", "MARKET_ASOF": "2025-06-13"},
        "load-data",
        "--symbols",
        "GLD",
        "--years",
        "1",
        "--intraday-days",
        "0",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["seed"], doc["asof"]) == (7, "2025-06-13")
    full = daily_history(7, "GLD", date(2025, 6, 13))
    stored = stored_bars(loader_db, "GLD", "1d")
    assert np.array_equal(stored.close, full.close[-len(stored) :])
    assert int(stored.time[-1]) == epoch_of(date(2025, 6, 13))


def test_the_cli_records_the_load_in_the_cutover_state(loader_env: Env) -> None:
    result = cli(
        loader_env, "load-data", "--symbols", "AAPL", "--years", "1", "--intraday-days", "0"
    )
    assert result.returncode == 0, result.stderr
    state = json.loads((Path(loader_env["CUTOVER_VAR_DIR"]) / "state.json").read_text())
    assert state["gates"]["data-load"]["passed"] is True
    assert state["history"][-1]["command"] == "load-data"
    assert state["history"][-1]["outcome"] == "done"


def test_an_unmigrated_database_exits_2_naming_the_db_command(
    cli_env: Env, postgres_server_url: str
) -> None:
    # The server's admin database has no schema of ours; the loader stops before writing.
    tables = sql(postgres_server_url, "SELECT to_regclass('load_runs') AS t")
    if tables[0]["t"] is not None:
        pytest.skip("the server's admin database carries this project's schema")
    result = cli(cli_env | {"DATABASE_URL": postgres_server_url}, "load-data", "--symbols", "AAPL")
    assert result.returncode == 2
    assert "the schema is not migrated" in result.stderr
    assert "./start.sh db" in result.stderr
