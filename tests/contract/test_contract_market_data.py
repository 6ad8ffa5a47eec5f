"""Quotes, candles and indicators: shapes, OHLC invariants, ordering and calendar semantics."""

from __future__ import annotations

import itertools
import re
from calendar import monthrange
from datetime import UTC, datetime

import httpx
import pytest

from contract.types import Candle, Historical, IndicatorSeries, Quote, QuoteBatch

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SESSION_OPEN = 14 * 3600 + 30 * 60
DAY = 86_400


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _clock(epoch: int) -> str:
    return f"{_utc(epoch):%H:%M}"


def history(client: httpx.Client, expect, reader, symbol: str, period: str, interval: str):
    response = client.get(
        f"{API}/market-data/{symbol}/historical",
        params={"period": period, "interval": interval},
        headers=reader,
    )
    return expect.ok(response, Historical)


def indicators(client: httpx.Client, expect, reader, symbol: str, period: str, interval: str):
    response = client.get(
        f"{API}/market-data/{symbol}/indicators",
        params={"period": period, "interval": interval},
        headers=reader,
    )
    return expect.ok(response, IndicatorSeries)


def _aggregate(bars: list[Candle]) -> tuple[int, float, float, float, float, int]:
    return (
        bars[0].time,
        bars[0].open,
        max(b.high for b in bars),
        min(b.low for b in bars),
        bars[-1].close,
        sum(b.volume for b in bars),
    )


def _as_tuple(candle: Candle) -> tuple[int, float, float, float, float, int]:
    return (candle.time, candle.open, candle.high, candle.low, candle.close, candle.volume)


# -- quotes ---------------------------------------------------------------------------------


def test_quote_is_consistent(client: httpx.Client, expect, reader) -> None:
    quote = expect.ok(client.get(f"{API}/market-data/SPY", headers=reader), Quote)
    assert quote.symbol == "SPY"
    assert quote.price > 0
    assert quote.bid < quote.ask
    assert quote.bid <= quote.price <= quote.ask
    assert quote.low <= quote.price <= quote.high
    assert quote.low <= quote.open <= quote.high
    assert quote.volume >= 0
    assert quote.change == pytest.approx(quote.price - quote.previous_close, abs=2e-4)
    assert quote.change_percent == pytest.approx(
        quote.change / quote.previous_close * 100, abs=0.01
    )
    assert ISO_MS.match(quote.timestamp), quote.timestamp
    for price in (quote.price, quote.open, quote.high, quote.low, quote.bid, quote.ask):
        assert round(price, 4) == price, f"{price} is not rounded to 4 decimals"


def test_quote_is_public_and_symbols_are_upper_cased(client: httpx.Client, expect) -> None:
    quote = expect.ok(client.get(f"{API}/market-data/spy"), Quote)
    assert quote.symbol == "SPY"


def test_quote_previous_close_is_the_close_before_the_last_daily_bar(
    client: httpx.Client, expect, reader
) -> None:
    quote = expect.ok(client.get(f"{API}/market-data/SPY", headers=reader), Quote)
    daily = history(client, expect, reader, "SPY", "1mo", "1d").data
    assert quote.previous_close == daily[-2].close
    assert quote.open == daily[-1].open
    assert quote.volume == daily[-1].volume


def test_quotes_batch_lists_unknown_symbols_as_missing(
    client: httpx.Client, expect, reader
) -> None:
    response = client.post(
        f"{API}/market-data/quotes",
        json={"symbols": ["spy", "ZZZZ", "AAPL", "SPY", "zzzz"]},
        headers=reader,
    )
    batch = expect.ok(response, QuoteBatch)
    assert [quote.symbol for quote in batch.quotes] == ["SPY", "AAPL"]
    assert batch.missing == ["ZZZZ"]


def test_quotes_batch_is_public(client: httpx.Client, expect) -> None:
    batch = expect.ok(
        client.post(f"{API}/market-data/quotes", json={"symbols": ["QQQ"]}), QuoteBatch
    )
    assert [quote.symbol for quote in batch.quotes] == ["QQQ"]
    assert batch.missing == []


# -- candles --------------------------------------------------------------------------------


def test_historical_defaults_to_one_month_of_daily_bars(
    client: httpx.Client, expect, reader
) -> None:
    answer = expect.ok(client.get(f"{API}/market-data/SPY/historical", headers=reader), Historical)
    assert (answer.symbol, answer.period, answer.interval) == ("SPY", "1mo", "1d")
    assert 18 <= len(answer.data) <= 23


@pytest.mark.parametrize(
    ("period", "interval"),
    [
        ("5d", "5m"),
        ("2d", "15m"),
        ("5d", "30m"),
        ("5d", "1h"),
        ("60d", "4h"),
        ("1mo", "1d"),
        ("ytd", "1d"),
        ("1y", "1wk"),
        ("5y", "1mo"),
        ("max", "1mo"),
    ],
)
def test_candles_are_ohlc_consistent_and_oldest_first(
    client: httpx.Client, expect, reader, period: str, interval: str
) -> None:
    answer = history(client, expect, reader, "spy", period, interval)
    assert (answer.symbol, answer.period, answer.interval) == ("SPY", period, interval)
    assert answer.data, "no candles"
    times = [candle.time for candle in answer.data]
    assert all(a < b for a, b in itertools.pairwise(times)), "not strictly increasing"
    for candle in answer.data:
        assert candle.low <= min(candle.open, candle.close), candle
        assert max(candle.open, candle.close) <= candle.high, candle
        assert candle.volume >= 0, candle
        assert candle.low > 0, candle


def test_one_hour_of_five_minute_bars_is_twelve_candles_300_s_apart(
    client: httpx.Client, expect, reader
) -> None:
    data = history(client, expect, reader, "SPY", "1h", "5m").data
    assert len(data) == 12
    times = [candle.time for candle in data]
    assert {b - a for a, b in itertools.pairwise(times)} == {300}


def test_one_day_of_five_minute_bars_is_one_whole_session(
    client: httpx.Client, expect, reader
) -> None:
    data = history(client, expect, reader, "SPY", "1d", "5m").data
    assert len(data) == 78
    assert _clock(data[0].time) == "14:30"
    assert _clock(data[-1].time) == "20:55"
    assert len({_utc(c.time).date() for c in data}) == 1


@pytest.mark.parametrize(("interval", "count"), [("15m", 26), ("30m", 13), ("1h", 7)])
def test_one_day_at_larger_intraday_intervals_counts_its_buckets(
    client: httpx.Client, expect, reader, interval: str, count: int
) -> None:
    data = history(client, expect, reader, "SPY", "1d", interval).data
    assert len(data) == count
    assert _clock(data[0].time) == "14:30"


def test_hourly_buckets_open_at_the_session_and_aggregate_the_five_minute_bars(
    client: httpx.Client, expect, reader
) -> None:
    hours = history(client, expect, reader, "SPY", "1d", "1h").data
    fives = history(client, expect, reader, "SPY", "1d", "5m").data
    assert [_clock(c.time) for c in hours] == [
        "14:30",
        "15:30",
        "16:30",
        "17:30",
        "18:30",
        "19:30",
        "20:30",
    ]
    for hour in hours:
        inside = [c for c in fives if hour.time <= c.time < hour.time + 3600]
        assert inside, hour
        assert _as_tuple(hour) == _aggregate(inside)
    assert sum(1 for c in fives if c.time >= hours[-1].time) == 6, "the last hour is 30 minutes"


def test_four_hour_buckets_sit_at_14_30_and_18_30(client: httpx.Client, expect, reader) -> None:
    data = history(client, expect, reader, "SPY", "5d", "4h").data
    assert {_clock(c.time) for c in data} == {"14:30", "18:30"}
    per_day: dict[object, list[str]] = {}
    for candle in data:
        per_day.setdefault(_utc(candle.time).date(), []).append(_clock(candle.time))
    assert all(clocks == ["14:30", "18:30"] for clocks in list(per_day.values())[1:])


def test_intraday_bars_are_300_s_apart_within_a_session(
    client: httpx.Client, expect, reader
) -> None:
    data = history(client, expect, reader, "SPY", "5d", "5m").data
    assert len(data) <= 5 * 78
    for a, b in itertools.pairwise(data):
        if _utc(a.time).date() == _utc(b.time).date():
            assert b.time - a.time == 300
        else:
            assert _clock(b.time) == "14:30"
    for candle in data:
        assert SESSION_OPEN <= candle.time % DAY < 21 * 3600


def test_five_days_of_daily_bars_is_at_most_five_weekdays_at_midnight(
    client: httpx.Client, expect, reader
) -> None:
    data = history(client, expect, reader, "SPY", "5d", "1d").data
    assert 1 <= len(data) <= 5
    for candle in data:
        assert candle.time % DAY == 0
        assert _utc(candle.time).weekday() < 5


def test_weekly_buckets_are_iso_weeks_starting_on_their_first_trading_day(
    client: httpx.Client, expect, reader
) -> None:
    weeks = history(client, expect, reader, "SPY", "1y", "1wk").data
    days = history(client, expect, reader, "SPY", "2y", "1d").data
    assert len(weeks) >= 50
    for week in weeks:
        assert week.time % DAY == 0
        iso = _utc(week.time).isocalendar()[:2]
        inside = [d for d in days if _utc(d.time).isocalendar()[:2] == iso]
        assert inside, week
        assert _as_tuple(week) == _aggregate(inside), f"week of {_utc(week.time):%Y-%m-%d}"
    mondays = sum(1 for week in weeks if _utc(week.time).weekday() == 0)
    assert mondays >= len(weeks) * 0.8, "weeks start on Mondays unless Monday is no trading day"


def test_monthly_buckets_start_on_the_first_trading_day_of_the_month(
    client: httpx.Client, expect, reader
) -> None:
    months = history(client, expect, reader, "SPY", "1y", "1mo").data
    days = history(client, expect, reader, "SPY", "2y", "1d").data
    assert 12 <= len(months) <= 13
    for month in months:
        moment = _utc(month.time)
        inside = [
            d
            for d in days
            if (_utc(d.time).year, _utc(d.time).month) == (moment.year, moment.month)
        ]
        assert inside, month
        assert _as_tuple(month) == _aggregate(inside), f"month of {moment:%Y-%m}"
        assert moment.day <= 4, "a month starts on its first trading day"


def test_a_period_counts_back_from_the_latest_bar(client: httpx.Client, expect, reader) -> None:
    days = history(client, expect, reader, "SPY", "1y", "1d").data
    month = history(client, expect, reader, "SPY", "1mo", "1d").data
    latest = _utc(days[-1].time)
    year, mon = (latest.year, latest.month - 1) if latest.month > 1 else (latest.year - 1, 12)
    # One calendar month back, the day clamped to that month's end.
    start = latest.replace(year=year, month=mon, day=min(latest.day, monthrange(year, mon)[1]))
    expected = [c for c in days if c.time > int(start.timestamp())]
    assert [c.time for c in month] == [c.time for c in expected]
    assert month[-1] == days[-1]


# -- indicators -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daily_max(client: httpx.Client, expect, reader):
    return indicators(client, expect, reader, "SPY", "max", "1d")


def test_indicators_are_null_until_defined(daily_max) -> None:
    data = daily_max.data
    assert len(data) > 1000
    firsts = {
        "sma_20": 19,
        "sma_50": 49,
        "sma_200": 199,
        "ema_12": 11,
        "ema_26": 25,
        "rsi_14": 14,
        "bb_middle": 19,
        "atr_14": 14,
        "volume_ratio": 19,
        "macd_hist": 33,
    }
    for name, first in firsts.items():
        values = [getattr(point, name) for point in data]
        assert all(v is None for v in values[:first]), f"{name} defined before bar {first}"
        assert values[first] is not None, f"{name} undefined at bar {first}"
        assert all(v is not None for v in values[first:]), f"{name} undefined after bar {first}"


def test_indicators_are_computed_over_the_whole_history(
    client: httpx.Client, expect, reader
) -> None:
    month = indicators(client, expect, reader, "SPY", "1mo", "1d").data
    session = indicators(client, expect, reader, "SPY", "1d", "5m").data
    assert month[0].sma_200 is not None, "sma_200 of a 1mo window comes from earlier bars"
    assert session[0].sma_200 is not None, "sma_200 of a 1d window comes from earlier bars"


def test_indicator_times_match_the_candles(client: httpx.Client, expect, reader) -> None:
    points = indicators(client, expect, reader, "SPY", "5d", "1h").data
    candles = history(client, expect, reader, "SPY", "5d", "1h").data
    assert [p.time for p in points] == [c.time for c in candles]


def test_indicator_values_are_coherent(client: httpx.Client, expect, reader) -> None:
    answer = indicators(client, expect, reader, "SPY", "3mo", "1d")
    assert (answer.symbol, answer.period, answer.interval) == ("SPY", "3mo", "1d")
    candles = history(client, expect, reader, "SPY", "3mo", "1d").data
    for point in answer.data:
        assert point.bb_lower <= point.bb_middle <= point.bb_upper
        assert point.bb_middle == pytest.approx(point.sma_20, abs=2e-4)
        assert 0 <= point.rsi_14 <= 100
        assert point.macd_hist == pytest.approx(point.macd - point.macd_signal, abs=3e-4)
        assert point.atr_14 > 0
        assert point.volume_ratio >= 0
    closes = [c.close for c in candles]
    volumes = [c.volume for c in candles]
    last = answer.data[-1]
    assert last.sma_20 == pytest.approx(sum(closes[-20:]) / 20, abs=2e-4)
    assert last.sma_50 == pytest.approx(sum(closes[-50:]) / 50, abs=2e-4)
    assert last.volume_ratio == pytest.approx(volumes[-1] / (sum(volumes[-20:]) / 20), abs=2e-4)
