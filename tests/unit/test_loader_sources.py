"""The loader's sources without a database: CSV layouts and their bad rows, merging and windows,
the synthetic and provider sources, and the binary COPY encoding of a prepared symbol.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from contract.universe import UNIVERSE
from market.bars import Bars
from market.calendar import ORIGIN
from market.history import daily_history, intraday_history
from market.indicators import INDICATOR_NAMES
from ops.loader.csvfiles import detect_layout, parse_file, symbol_from_name
from ops.loader.payload import COPY_HEADER, COPY_TRAILER, PG_EPOCH_SECONDS, digest, prepare
from ops.loader.rows import Problem, RawRows, capped, check_rows
from ops.loader.sources import (
    CsvSource,
    ProviderSource,
    Request,
    SourceError,
    SymbolJob,
    SyntheticRecipe,
    SyntheticSource,
    Window,
    epoch_of,
    parse_source,
    parse_symbols,
)
from ops.settings import PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "csv"


def day(text: str) -> int:
    return epoch_of(date.fromisoformat(text))


# --- layouts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "layout", "missing"),
    [
        ("Date,Open,High,Low,Close,Adj Close,Volume", "yahoo", []),
        ("Date,Open,High,Low,Close,Volume", "stooq", []),
        ("\ufeffdate, open ,HIGH,low,close,volume", "stooq", []),
        (
            "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>",
            "stooq-bulk",
            [],
        ),
        ("Date,Open,High,Low,Close", "stooq", ["Volume"]),
        ("<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>", "stooq-bulk", ["<VOL>"]),
        ("hello,world", None, []),
    ],
)
def test_the_layout_is_detected_from_the_header(
    header: str, layout: str | None, missing: list[str]
) -> None:
    assert detect_layout(header.split(",")) == (layout, missing)


def test_symbols_come_from_file_names_and_tickers() -> None:
    assert symbol_from_name("aapl.us") == "AAPL"
    assert symbol_from_name("BRK-B") == "BRK-B"
    assert symbol_from_name("^spx") == "^SPX"
    assert symbol_from_name("not a symbol") is None
    assert symbol_from_name("WAYTOOLONGSYMBOL") is None


def test_each_good_layout_parses_to_bars_at_their_utc_times() -> None:
    yahoo = parse_file(FIXTURES / "good" / "AAPL.csv", "AAPL.csv")
    assert (yahoo.layout, yahoo.adjusted, yahoo.problems) == ("yahoo", False, [])
    aapl = yahoo.series[("AAPL", "1d")].bars
    assert aapl.time.tolist() == [day(f"2026-11-0{d}") for d in range(2, 7)]
    assert aapl.close.tolist() == [101.0, 101.5, 102.5, 103.0, 103.5]
    assert aapl.volume.dtype == np.int64
    assert aapl.volume[0] == 1_000_000

    stooq = parse_file(FIXTURES / "good" / "msft.us.txt", "msft.us.txt")
    assert stooq.layout == "stooq"
    assert list(stooq.series) == [("MSFT", "1d")]

    bulk = parse_file(FIXTURES / "good" / "bulk.txt", "bulk.txt")
    assert bulk.layout == "stooq-bulk"
    assert sorted(bulk.series) == [("QQQ", "1d"), ("SPY", "1d"), ("SPY", "5m")]
    spy = bulk.series[("SPY", "5m")]
    assert spy.bars.time.tolist() == [
        day("2026-11-03") + 14 * 3600 + 1800 + 300 * i for i in range(3)
    ]
    assert spy.lines.tolist() == [4, 5, 6]
    (weekly,) = bulk.problems
    assert (weekly.kind, weekly.line, weekly.rows, weekly.symbol) == (
        "unsupported_period",
        9,
        1,
        "QQQ",
    )


def test_adjusted_yahoo_prices_are_scaled_by_adj_close_keeping_their_order() -> None:
    parsed = parse_file(FIXTURES / "good" / "AAPL.csv", "AAPL.csv", adjusted=True)
    assert parsed.adjusted is True
    bars = parsed.series[("AAPL", "1d")].bars
    assert bars.close.tolist() == pytest.approx([100.0, 100.5, 101.49, 102.0, 102.5], rel=1e-12)
    assert bars.high[0] == pytest.approx(101.5 * 100.0 / 101.0, rel=1e-12)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    stooq = parse_file(FIXTURES / "good" / "msft.us.txt", "msft.us.txt", adjusted=True)
    assert stooq.adjusted is None  # Stooq publishes one series: stored as given


# --- bad rows -------------------------------------------------------------------------------


def test_every_kind_of_bad_row_is_skipped_with_its_line() -> None:
    parsed = parse_file(FIXTURES / "bad" / "BADROWS.csv", "BADROWS.csv")
    assert [(p.line, p.kind) for p in parsed.problems] == [
        (3, "nan"),
        (4, "non_positive_price"),
        (5, "high_below_low"),
        (6, "ohlc_inconsistent"),
        (8, "duplicate_date"),
        (9, "unparseable_date"),
        (10, "unparseable_number"),
        (11, "wrong_field_count"),
        (12, "negative_volume"),
        (13, "nan"),
    ]
    assert all(p.file == "BADROWS.csv" and p.symbol == "BADROWS" for p in parsed.problems)
    assert "already on line 7" in parsed.problems[4].detail
    good = parsed.series[("BADROWS", "1d")]
    assert good.lines.tolist() == [2, 7, 14]
    assert good.bars.close.tolist() == [10.2, 10.3, 10.5]


def test_a_truncated_file_keeps_its_complete_lines_and_names_the_cut() -> None:
    parsed = parse_file(FIXTURES / "bad" / "TRUNC.csv", "TRUNC.csv")
    (problem,) = parsed.problems
    assert (problem.kind, problem.line) == ("truncated", 4)
    assert "ends in the middle of line 4" in problem.detail
    assert len(parsed.series[("TRUNC", "1d")].bars) == 2


def test_a_last_line_without_newline_that_is_complete_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "X.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2026-11-02,1,2,0.5,1.5,10")
    parsed = parse_file(path, "X.csv")
    assert parsed.problems == []
    assert len(parsed.series[("X", "1d")].bars) == 1


@pytest.mark.parametrize(
    ("name", "kind", "line", "rows"),
    [
        ("NOCOLS.csv", "missing_columns", 1, 2),
        ("EMPTY.csv", "empty_file", None, 0),
        ("notes.txt", "unknown_layout", 1, 1),
    ],
)
def test_an_unusable_file_is_one_problem_and_no_rows(
    name: str, kind: str, line: int | None, rows: int
) -> None:
    parsed = parse_file(FIXTURES / "bad" / name, name)
    assert [(p.kind, p.line, p.rows) for p in parsed.problems] == [(kind, line, rows)]
    assert parsed.series == {}


def test_bad_bulk_rows_name_their_ticker_and_line() -> None:
    parsed = parse_file(FIXTURES / "bad" / "bulk-bad.txt", "bulk-bad.txt")
    assert [(p.line, p.kind, p.symbol) for p in parsed.problems] == [
        (3, "off_grid_time", "IWM"),
        (4, "unparseable_date", "IWM"),
        (5, "bad_symbol", None),
        (6, "unsupported_period", "IWM"),
    ]
    assert sorted(parsed.series) == [("IWM", "1d"), ("IWM", "5m")]


def test_a_header_only_file_says_it_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "Y.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n")
    (problem,) = parse_file(path, "Y.csv").problems
    assert (problem.kind, problem.rows) == ("empty_file", 0)


def test_check_rows_sorts_and_keeps_the_first_of_a_repeated_time() -> None:
    rows = RawRows(
        time=np.array([day("2026-11-03"), day("2026-11-02"), day("2026-11-03")]),
        open=np.array([2.0, 1.0, 3.0]),
        high=np.array([2.0, 1.0, 3.0]),
        low=np.array([2.0, 1.0, 3.0]),
        close=np.array([2.0, 1.0, 3.0]),
        volume=np.array([1.0, 1.0, 1.0]),
        lines=np.array([10, 11, 12]),
    )
    checked, problems = check_rows(rows, "1d", file="f", symbol="S")
    assert checked.bars.close.tolist() == [1.0, 2.0]
    assert checked.lines.tolist() == [11, 10]
    assert [(p.kind, p.line) for p in problems] == [("duplicate_date", 12)]


def test_problems_are_capped_per_file_and_kind_without_losing_the_count() -> None:
    many = [Problem("nan", "x", file="a.csv", line=i) for i in range(50)]
    other = [Problem("nan", "x", file="b.csv", line=1)]
    listed = capped(many + other, per_kind=20)
    assert len(listed) == 22
    more = [p for p in listed if p.kind == "more"]
    assert [(p.file, p.rows) for p in more] == [("a.csv", 30)]
    assert sum(p.rows for p in listed) == 51


# --- planning -------------------------------------------------------------------------------


def test_csv_plan_merges_files_and_reports_a_date_found_twice(tmp_path: Path) -> None:
    (tmp_path / "ABC.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n2026-11-02,1,2,0.5,1.5,10\n2026-11-03,1,2,0.5,1.6,10\n"
    )
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "abc.us.txt").write_text(
        "Date,Open,High,Low,Close,Volume\n2026-11-03,1,2,0.5,1.9,10\n2026-11-04,1,2,0.5,1.7,10\n"
    )
    (tmp_path / ".hidden.csv").write_text("not,read\n")
    plan = CsvSource(tmp_path).plan(Request())
    (job,) = plan.jobs
    series = job.recipe.series()
    assert series.daily.close.tolist() == [1.5, 1.6, 1.7]
    (duplicate,) = series.problems
    assert (duplicate.kind, duplicate.file, duplicate.line) == (
        "duplicate_date",
        "more/abc.us.txt",
        2,
    )
    assert "ABC.csv line 3" in duplicate.detail
    assert [f.file for f in plan.files] == ["ABC.csv", "more/abc.us.txt"]


def test_csv_plan_applies_the_window_and_the_symbol_selection() -> None:
    plan = CsvSource(FIXTURES / "good").plan(
        Request(symbols=("SPY", "AAPL", "NVDA"), asof=date(2026, 11, 3), intraday_days=0)
    )
    assert plan.window == Window(date(2026, 11, 3), date(2004, 11, 3), 0)  # 22 years by default
    series = {job.symbol: job.recipe.series() for job in plan.jobs}
    assert sorted(series) == ["AAPL", "SPY"]
    assert len(series["AAPL"].daily) == 2  # 11-04 to 11-06 lie after the as-of date
    assert len(series["SPY"].intraday) == 0
    assert [(p.kind, p.symbol) for p in plan.problems] == [("missing_symbol", "NVDA")]


def test_a_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        CsvSource(tmp_path / "nowhere").plan(Request())
    with pytest.raises(SourceError, match=r"no \.csv or \.txt file"):
        CsvSource(tmp_path).plan(Request())


def test_synthetic_plan_is_the_universe_clipped_to_the_origin() -> None:
    source = SyntheticSource(seed=42, default_asof=date(2026, 11, 20))
    plan = source.plan(Request(years=40))
    assert len(plan.jobs) == len(UNIVERSE) == 45
    assert plan.window.daily_from == ORIGIN
    # By default the whole synthetic history: production holds every bar the mock serves.
    assert source.plan(Request()).window.daily_from == ORIGIN
    assert source.plan(Request(years=20)).window.daily_from == date(2006, 11, 20)


def test_the_synthetic_recipe_is_the_generator_cut_to_the_window() -> None:
    window = Window(date(2026, 11, 20), date(2025, 11, 20), 3)
    series = SyntheticRecipe(42, "AAPL", window).series()
    full = daily_history(42, "AAPL", window.asof)
    assert series.daily.time[0] >= epoch_of(window.daily_from) > full.time[0]
    assert np.array_equal(series.daily.close, full.close[-len(series.daily) :])
    intraday = intraday_history(42, "AAPL", window.asof, 3)
    assert np.array_equal(series.intraday.close, intraday.close)
    assert series.problems == []


@dataclass(frozen=True)
class FakeProvider:
    """A provider answering fixed bars, one of them bad."""

    name: str = "fake"
    adjusted: bool = True

    def daily(self, symbol: str, start: date, end: date) -> Bars:
        times = np.array([day("2026-11-02"), day("2026-11-03"), day("2020-01-02")])
        prices = np.array([10.0, -1.0, 10.0])
        volume = np.array([5, 5, 5], dtype=np.int64)
        return Bars(time=times, open=prices, high=prices, low=prices, close=prices, volume=volume)

    def intraday(self, symbol: str, start: date, end: date) -> Bars:
        return Bars.empty()


def test_a_provider_plugs_in_and_its_rows_are_checked() -> None:
    source = ProviderSource(FakeProvider(), default_asof=date(2026, 11, 3))
    assert (source.info.kind, source.info.detail, source.info.adjusted) == (
        "provider",
        "fake",
        True,
    )
    plan = source.plan(Request(symbols=("XYZ",), years=1))
    series = plan.jobs[0].recipe.series()
    assert series.daily.time.tolist() == [day("2026-11-02")]  # 2020 lies outside the window
    assert [(p.kind, p.file, p.line) for p in series.problems] == [
        ("non_positive_price", "fake", 2)
    ]


def test_sources_are_chosen_by_name() -> None:
    assert isinstance(
        parse_source("synthetic", seed=1, asof=ORIGIN, adjusted=False), SyntheticSource
    )
    csv = parse_source("csv:tests/fixtures", seed=1, asof=ORIGIN, adjusted=True)
    assert isinstance(csv, CsvSource)
    assert csv.adjusted is True
    with pytest.raises(SourceError, match="no networked provider"):
        parse_source("yahoo", seed=1, asof=ORIGIN, adjusted=False)
    with pytest.raises(SourceError, match="accepted synthetic or csv:FOLDER"):
        parse_source("csv:", seed=1, asof=ORIGIN, adjusted=False)
    with pytest.raises(SourceError, match="not to synthetic"):
        parse_source("synthetic", seed=1, asof=ORIGIN, adjusted=True)
    assert parse_symbols(" aapl, MSFT,,aapl ") == ("AAPL", "MSFT")
    assert parse_symbols(None) is None
    with pytest.raises(SourceError, match="is not a symbol"):
        parse_symbols("AAPL,NO WAY")


# --- the prepared payload -------------------------------------------------------------------


def _tuples(stream: bytes, widths: list[int]) -> list[list[bytes]]:
    """Decode a binary COPY stream whose fields have the given widths (text fields: 0)."""
    assert stream.startswith(COPY_HEADER)
    assert stream.endswith(COPY_TRAILER)
    body, rows = stream[len(COPY_HEADER) : -len(COPY_TRAILER)], []
    at = 0
    while at < len(body):
        (count,) = struct.unpack_from(">h", body, at)
        at += 2
        fields = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", body, at)
            fields.append(body[at + 4 : at + 4 + length])
            at += 4 + length
        rows.append(fields)
    assert all(len(r) == len(widths) for r in rows)
    return rows


def test_a_prepared_symbol_is_valid_binary_copy_with_its_checksums() -> None:
    window = Window(date(2026, 11, 20), date(2026, 10, 1), 2)
    payload = prepare(SymbolJob("SPY", SyntheticRecipe(42, "SPY", window)))
    series = SyntheticRecipe(42, "SPY", window).series()
    assert (payload.daily_rows, payload.intraday_rows) == (len(series.daily), len(series.intraday))

    bars = _tuples(payload.bars_copy, [0, 0, 8, 8, 8, 8, 8, 8])
    assert len(bars) == payload.rows
    first = bars[0]
    assert (first[0], first[1]) == (b"SPY", b"1d")
    (micros,) = struct.unpack(">q", first[2])
    assert micros // 1_000_000 + PG_EPOCH_SECONDS == series.daily.time[0]
    assert struct.unpack(">d", first[6])[0] == series.daily.close[0]
    assert struct.unpack(">q", first[7])[0] == series.daily.volume[0]
    assert bars[-1][1] == b"5m"

    indicators = _tuples(payload.indicators_copy, [0, 0, 8, *[8] * len(INDICATOR_NAMES)])
    assert len(indicators) == payload.rows
    assert np.isnan(struct.unpack(">d", indicators[0][3])[0])  # sma_20 undefined on bar 1

    d = payload.digests["1d"]
    assert (d.rows, d.first, d.last) == (
        len(series.daily),
        series.daily.time[0],
        series.daily.time[-1],
    )
    manual = b"".join(
        struct.pack(">qddddq", t, o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(
            series.daily.time.tolist(),
            series.daily.open.tolist(),
            series.daily.high.tolist(),
            series.daily.low.tolist(),
            series.daily.close.tolist(),
            series.daily.volume.tolist(),
            strict=True,
        )
    )
    assert d.md5 == hashlib.md5(manual).hexdigest()
    assert digest(Bars.empty()).md5 == hashlib.md5(b"").hexdigest()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MARKET_SEED", "-1", "MARKET_SEED=-1 is out of range"),
        ("MARKET_SEED", str(2**31), f"MARKET_SEED={2**31} is out of range"),
        ("MARKET_SEED", "forty-two", "MARKET_SEED='forty-two' is not an integer"),
        ("MARKET_ASOF", "2001-01-02", "MARKET_ASOF=2001-01-02 is before the history's origin"),
        ("MARKET_ASOF", "20th of May", "MARKET_ASOF='20th of May' is not a date"),
    ],
)
def test_the_loader_refuses_the_market_settings_the_backends_refuse(
    variable: str, value: str, named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ops.loader.run import LoadError, market_defaults

    monkeypatch.setenv("CUTOVER_ENV_FILE", str(tmp_path / ".env"))
    monkeypatch.delenv("MARKET_SEED", raising=False)
    monkeypatch.delenv("MARKET_ASOF", raising=False)
    assert market_defaults() == (42, date(2026, 11, 20))
    monkeypatch.setenv(variable, value)
    with pytest.raises(LoadError, match=re.escape(named)) as raised:
        market_defaults()
    assert raised.value.precondition is True
