"""load-data from CSV folders on a real PostgreSQL: each layout (Yahoo, Stooq per symbol, Stooq
bulk with daily and 5-minute bars), the adjusted flag, and a folder of bad files whose bad rows
are skipped and reported with file and line while the good rows and files load.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ops.loader.run import LoadOptions, load
from ops.settings import PROJECT_ROOT
from tests.conftest import Env
from tests.integration.conftest import cli, sql

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "csv"
GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"


def closes(url: str, symbol: str, interval: str = "1d") -> list[tuple[str, float]]:
    rows = sql(
        url,
        "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS t, close FROM bars "
        "WHERE symbol = $1 AND interval = $2 ORDER BY time",
        symbol,
        interval,
    )
    return [(r["t"], r["close"]) for r in rows]


def test_each_layout_loads_with_its_source_recorded(loader_db: str) -> None:
    report = load(LoadOptions(source=f"csv:{GOOD}"))

    assert report.window.asof == date(2026, 11, 6)  # the files' last date
    layouts = {f.file: f.layout for f in report.files}
    assert layouts == {"AAPL.csv": "yahoo", "msft.us.txt": "stooq", "bulk.txt": "stooq-bulk"}
    counts = {
        (r["symbol"], r["interval"]): r["n"]
        for r in sql(loader_db, "SELECT symbol, interval, count(*) AS n FROM bars GROUP BY 1, 2")
    }
    assert counts == {
        ("AAPL", "1d"): 5,
        ("MSFT", "1d"): 4,
        ("SPY", "1d"): 2,
        ("SPY", "5m"): 3,
        ("QQQ", "1d"): 2,
    }
    assert report.counts["inserted"] == 16
    # Yahoo's Close is stored as given (not adjusted) by default.
    assert closes(loader_db, "AAPL")[:2] == [
        ("2026-11-02 00:00", 101.0),
        ("2026-11-03 00:00", 101.5),
    ]
    assert closes(loader_db, "MSFT")[-1] == ("2026-11-05 00:00", 399.1)
    assert closes(loader_db, "SPY", "5m") == [
        ("2026-11-03 14:30", 584.2),
        ("2026-11-03 14:35", 584.8),
        ("2026-11-03 14:40", 584.5),
    ]
    indicator_rows = sql(loader_db, "SELECT count(*) AS n FROM indicators")[0]["n"]
    assert indicator_rows == 16
    # The weekly row of the bulk file is not loaded, and said so.
    (weekly,) = report.problems
    assert (weekly.kind, weekly.file, weekly.line) == ("unsupported_period", "bulk.txt", 9)

    (run,) = sql(
        loader_db, "SELECT source, source_detail, seed, adjusted, asof, problems FROM load_runs"
    )
    assert (run["source"], run["source_detail"], run["seed"], run["adjusted"]) == (
        "csv",
        str(GOOD),
        None,
        False,
    )
    assert json.loads(run["problems"])[0]["kind"] == "unsupported_period"


def test_adjusted_scales_yahoo_prices_by_adj_close(loader_db: str) -> None:
    load(LoadOptions(source=f"csv:{GOOD}"))
    report = load(LoadOptions(source=f"csv:{GOOD}", adjusted=True))
    # Only AAPL (the Yahoo file) changes; Stooq prices are stored as published.
    assert (report.counts["inserted"], report.counts["updated"]) == (0, 5)
    assert report.source.adjusted is True
    stored = sql(
        loader_db,
        "SELECT open, high, low, close FROM bars WHERE symbol = 'AAPL' ORDER BY time LIMIT 1",
    )[0]
    ratio = 100.0 / 101.0  # Adj Close / Close of 2026-11-02
    assert stored["close"] == pytest.approx(100.0, rel=1e-12)
    assert stored["high"] == pytest.approx(101.5 * ratio, rel=1e-12)
    assert stored["low"] == pytest.approx(99.5 * ratio, rel=1e-12)
    runs = sql(loader_db, "SELECT adjusted FROM load_runs ORDER BY id")
    assert [r["adjusted"] for r in runs] == [False, True]


EXPECTED_PROBLEMS = {
    ("BADROWS.csv", 3, "nan"),
    ("BADROWS.csv", 4, "non_positive_price"),
    ("BADROWS.csv", 5, "high_below_low"),
    ("BADROWS.csv", 6, "ohlc_inconsistent"),
    ("BADROWS.csv", 8, "duplicate_date"),
    ("BADROWS.csv", 9, "unparseable_date"),
    ("BADROWS.csv", 10, "unparseable_number"),
    ("BADROWS.csv", 11, "wrong_field_count"),
    ("BADROWS.csv", 12, "negative_volume"),
    ("BADROWS.csv", 13, "nan"),
    ("TRUNC.csv", 4, "truncated"),
    ("NOCOLS.csv", 1, "missing_columns"),
    ("EMPTY.csv", None, "empty_file"),
    ("notes.txt", 1, "unknown_layout"),
    ("bulk-bad.txt", 3, "off_grid_time"),
    ("bulk-bad.txt", 4, "unparseable_date"),
    ("bulk-bad.txt", 5, "bad_symbol"),
    ("bulk-bad.txt", 6, "unsupported_period"),
}


def test_bad_rows_and_files_are_skipped_and_reported_while_the_rest_loads(
    loader_env: Env, loader_db: str
) -> None:
    env = loader_env | {"COLUMNS": "250"}
    result = cli(env, "load-data", "--source", f"csv:{BAD}", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)

    found = {(p["file"], p["line"], p["kind"]) for p in doc["problems"]}
    assert found == EXPECTED_PROBLEMS
    counts = {
        (r["symbol"], r["interval"]): r["n"]
        for r in sql(loader_db, "SELECT symbol, interval, count(*) AS n FROM bars GROUP BY 1, 2")
    }
    assert counts == {
        ("BADROWS", "1d"): 3,
        ("GOOD", "1d"): 3,
        ("TRUNC", "1d"): 2,
        ("IWM", "1d"): 1,
        ("IWM", "5m"): 1,
    }
    # The duplicate date keeps the first row; the truncated file keeps its complete lines.
    assert closes(loader_db, "BADROWS") == [
        ("2026-11-02 00:00", 10.2),
        ("2026-11-09 00:00", 10.3),
        ("2026-11-16 00:00", 10.5),
    ]
    assert doc["counts"]["skipped"] == sum(p["rows"] for p in doc["problems"]) == 18
    assert doc["counts"]["inserted"] == 10
    (run,) = sql(loader_db, "SELECT problems FROM load_runs")
    stored = {(p["file"], p["line"], p["kind"]) for p in json.loads(run["problems"])}
    assert stored == EXPECTED_PROBLEMS

    text = cli(env, "load-data", "--source", f"csv:{BAD}")
    assert text.returncode == 0, text.stderr
    assert "bad rows and files (skipped)" in text.stdout
    for file, kind in (("TRUNC.csv", "truncated"), ("BADROWS.csv", "high_below_low")):
        assert any(file in line and kind in line for line in text.stdout.splitlines())
    assert "18 bad rows skipped" in text.stdout


def test_symbols_selects_files_and_names_the_missing(loader_db: str) -> None:
    report = load(LoadOptions(source=f"csv:{GOOD}", symbols=("SPY", "NVDA")))
    assert sorted(report.params["symbols"]) == ["SPY"]
    assert report.counts["daily_rows"] + report.counts["intraday_rows"] == 5
    missing = [p for p in report.problems if p.kind == "missing_symbol"]
    assert [(p.symbol, p.detail) for p in missing] == [("NVDA", "no file provides NVDA")]


def test_a_folder_that_does_not_exist_exits_2(loader_env: Env, tmp_path: Path) -> None:
    result = cli(loader_env, "load-data", "--source", f"csv:{tmp_path}/none")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
