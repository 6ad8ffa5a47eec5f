"""Same data, same answers: the server's values equal those computed locally with market/.

Applies when GET /health says the history is synthetic; the seed and as-of date come from it.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from contract.types import (
    Backtest,
    BacktestAccepted,
    GeneratedSignal,
    Historical,
    IndicatorSeries,
    SignalList,
    SymbolSignals,
)
from market import calendar
from market.backtest import run_backtest
from market.bars import Bars
from market.history import daily_history, intraday_history
from market.indicators import INDICATOR_NAMES, compute_indicators
from market.signals import latest_signal, recent_signals

API = "/api/v1"


def _series(synthetic, symbol: str, interval: str) -> Bars:
    if calendar.base_interval(interval) == "5m":
        base = intraday_history(synthetic.seed, symbol, synthetic.asof)
    else:
        base = daily_history(synthetic.seed, symbol, synthetic.asof)
    return calendar.aggregate(base, interval)


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("symbol", "period", "interval"),
    [
        ("SPY", "1h", "5m"),
        ("SPY", "1d", "5m"),
        ("AAPL", "5d", "15m"),
        ("SPY", "1d", "1h"),
        ("BRK-B", "5d", "4h"),
        ("SPY", "60d", "30m"),
        ("SPY", "1mo", "1d"),
        ("TSLA", "ytd", "1d"),
        ("SPY", "1y", "1wk"),
        ("SPY", "max", "1mo"),
        ("NVDA", "6mo", "1d"),
        ("SPY", "2wk", "1d"),
    ],
)
def test_candles_equal_the_reference_history(
    client: httpx.Client, expect, reader, synthetic, symbol: str, period: str, interval: str
) -> None:
    response = client.get(
        f"{API}/market-data/{symbol}/historical",
        params={"period": period, "interval": interval},
        headers=reader,
    )
    served = expect.ok(response, Historical).data
    local = calendar.select(_series(synthetic, symbol, interval), calendar.parse_period(period))
    assert len(served) == len(local), f"{period} at {interval}: bar count"
    expected = [
        (
            int(t),
            round(float(o), 4),
            round(float(h), 4),
            round(float(lo), 4),
            round(float(c), 4),
            int(v),
        )
        for t, o, h, lo, c, v in zip(
            local.time, local.open, local.high, local.low, local.close, local.volume, strict=True
        )
    ]
    got = [(c.time, c.open, c.high, c.low, c.close, c.volume) for c in served]
    assert got == expected


@pytest.mark.parametrize(("symbol", "interval"), [("SPY", "1d"), ("MSFT", "1d"), ("SPY", "1h")])
def test_indicators_at_the_last_bar_equal_the_reference(
    client: httpx.Client, expect, reader, synthetic, symbol: str, interval: str
) -> None:
    period = "5d"
    response = client.get(
        f"{API}/market-data/{symbol}/indicators",
        params={"period": period, "interval": interval},
        headers=reader,
    )
    served = expect.ok(response, IndicatorSeries).data
    bars = _series(synthetic, symbol, interval)
    frame = compute_indicators(bars)
    last = served[-1]
    assert last.time == int(bars.time[-1])
    row = frame.row(len(bars) - 1)
    for name in INDICATOR_NAMES:
        value = row[name]
        expected = None if value is None else round(value, 4)
        assert getattr(last, name) == expected, f"{name} of {symbol} {interval} at the last bar"
    assert last.rsi_14 is not None
    assert last.macd is not None


def test_sma_200_nulls_of_the_whole_daily_history(
    client: httpx.Client, expect, reader, synthetic
) -> None:
    response = client.get(
        f"{API}/market-data/SPY/indicators",
        params={"period": "max", "interval": "1d"},
        headers=reader,
    )
    served = expect.ok(response, IndicatorSeries).data
    bars = _series(synthetic, "SPY", "1d")
    frame = compute_indicators(bars)
    assert len(served) == len(bars)
    nulls = sum(1 for point in served if point.sma_200 is None)
    assert nulls == int(sum(1 for value in frame.sma_200 if value != value))
    index = 1000
    assert served[index].sma_200 == round(float(frame.sma_200[index]), 4)
    assert served[index].time == int(bars.time[index])


@pytest.mark.parametrize(("symbol", "timeframe"), [("SPY", "1d"), ("BRK-B", "1d"), ("SPY", "1h")])
def test_latest_signal_equals_the_reference(
    client: httpx.Client, expect, reader, synthetic, symbol: str, timeframe: str
) -> None:
    bars = _series(synthetic, symbol, timeframe)
    reference = latest_signal(symbol, timeframe, bars, compute_indicators(bars))
    answer = expect.ok(
        client.get(
            f"{API}/signals", params={"symbols": symbol, "timeframe": timeframe}, headers=reader
        ),
        SignalList,
    )
    (served,) = answer.signals
    assert (served.id, served.type, served.confidence) == (
        reference.id,
        reference.type,
        reference.confidence,
    )
    assert (served.entry, served.stop_loss, served.take_profit) == (
        reference.entry,
        reference.stop_loss,
        reference.take_profit,
    )
    assert [(a.agent, a.vote, a.confidence) for a in served.agents] == [
        (a.agent, a.vote, a.confidence) for a in reference.agents
    ]
    assert served.timestamp == reference.timestamp


def test_recent_signals_equal_the_reference(
    client: httpx.Client, expect, reader, synthetic
) -> None:
    bars = _series(synthetic, "SPY", "1d")
    reference = recent_signals("SPY", "1d", bars, compute_indicators(bars))
    served = expect.ok(client.get(f"{API}/signals/SPY", headers=reader), SymbolSignals).signals
    assert [(s.id, s.type, s.confidence) for s in served] == [
        (s.id, s.type, s.confidence) for s in reference
    ]


def test_generated_signal_equals_the_reference(
    client: httpx.Client, expect, demo, synthetic
) -> None:
    bars = _series(synthetic, "SPY", "1d")
    reference = latest_signal("SPY", "1d", bars, compute_indicators(bars))
    response = client.post(
        f"{API}/signals/generate", json={"symbol": "SPY", "timeframe": "1d"}, headers=demo.headers
    )
    served = expect.ok(response, GeneratedSignal).signal
    assert (served.id, served.type, served.confidence) == (
        reference.id,
        reference.type,
        reference.confidence,
    )


def test_backtest_result_equals_the_reference(
    client: httpx.Client, expect, make_user, synthetic
) -> None:
    account = make_user("golden")
    start = synthetic.asof - timedelta(days=730)
    params = {"fast": 10, "slow": 40}
    body = {
        "symbol": "SPY",
        "strategy": "sma_crossover",
        "start": start.isoformat(),
        "end": synthetic.asof.isoformat(),
        "params": params,
        "initial_capital": 25_000,
    }
    accepted = expect.ok(
        client.post(f"{API}/backtests", json=body, headers=account.headers),
        BacktestAccepted,
        status=202,
    )
    deadline = time.monotonic() + 30
    while True:
        final = expect.ok(
            client.get(f"{API}/backtests/{accepted.id}", headers=account.headers), Backtest
        )
        if final.status in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert final.status == "done", final
    assert final.result is not None
    reference = run_backtest(
        daily_history(synthetic.seed, "SPY", synthetic.asof),
        "sma_crossover",
        dict(final.request.params),
        25_000.0,
        _epoch(start),
        _epoch(synthetic.asof),
    )
    result = final.result
    assert (result.total_return, result.trade_count) == (
        reference.total_return,
        reference.trade_count,
    )
    assert (result.cagr, result.sharpe, result.max_drawdown, result.win_rate) == (
        reference.cagr,
        reference.sharpe,
        reference.max_drawdown,
        reference.win_rate,
    )
    assert result.trade_count > 0, "the golden backtest trades"
    assert [(t.entry_time, t.exit_time, t.entry_price, t.exit_price) for t in result.trades] == [
        (t.entry_time, t.exit_time, t.entry_price, t.exit_price) for t in reference.trades
    ]
    assert result.equity_curve[-1].equity == reference.equity_curve[-1].equity
