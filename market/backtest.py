"""The backtest engine: a strategy's positions traded over a time window, vectorised.

Rules: positions are computed over the whole history (indicators warm up before the window);
inside the window [start, end] a position wanted at a bar's close is filled at the next bar's
open, starting flat; a position still open is closed at the last bar's close. No fees or
slippage. A trade compounds the capital it started with: equity during a trade is the capital
at entry times (1 + side x (close / entry price - 1)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from market.bars import Bars, FloatArray, IntArray
from market.calendar import DAY_SECONDS, iso_ms
from market.strategies import STRATEGIES, ParamError, validate_params

_TRADING_DAYS = 252
# exp(50) - 1 as a yearly growth factor is already absurd; a tiny window must not overflow.
_MAX_LOG_GROWTH = 50.0


@dataclass(frozen=True, slots=True)
class TradeResult:
    """One round trip; times are the bars of the fills (epoch seconds), return_pct a percent."""

    entry_time: int
    exit_time: int
    side: str
    entry_price: float
    exit_price: float
    return_pct: float


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The equity at a bar's close."""

    time: int
    equity: float


@dataclass(frozen=True, slots=True)
class BacktestResultData:
    """A backtest result with exactly the wire fields of the contract (percents as percents)."""

    total_return: float
    cagr: float
    sharpe: float
    max_drawdown: float
    win_rate: float
    trade_count: int
    trades: tuple[TradeResult, ...]
    equity_curve: tuple[EquityPoint, ...]


def periods_per_year(time: IntArray) -> float:
    """Bars per year: 12 for monthly bars, 52 weekly, 252 daily (from the median spacing), and
    for intraday bars 252 times the bars per trading day."""
    if time.shape[0] < 2:
        return float(_TRADING_DAYS)
    spacing = float(np.median(np.diff(time)))
    if spacing >= 20 * DAY_SECONDS:
        return 12.0
    if spacing >= 5 * DAY_SECONDS:
        return 52.0
    if spacing >= 0.9 * DAY_SECONDS:
        return float(_TRADING_DAYS)
    days = np.unique(time // DAY_SECONDS).shape[0]
    return float(_TRADING_DAYS * time.shape[0] / days)


def _window(bars: Bars, start_time: int, end_time: int) -> tuple[int, int]:
    first = int(np.searchsorted(bars.time, start_time, side="left"))
    last = int(np.searchsorted(bars.time, end_time, side="right")) - 1
    count = last - first + 1
    if count < 2:
        raise ParamError(
            "start",
            f"the window {iso_ms(start_time)} to {iso_ms(end_time)} holds {max(count, 0)} "
            "bars; a backtest needs at least 2",
        )
    return first, last


def _sharpe(equity: FloatArray, per_year: float) -> float:
    previous = equity[:-1]
    returns = np.divide(
        equity[1:] - previous, previous, out=np.zeros_like(previous), where=previous > 0
    )
    if returns.size < 2:
        return 0.0
    deviation = float(np.std(returns, ddof=1))
    if deviation == 0:
        return 0.0
    return float(np.mean(returns)) / deviation * math.sqrt(per_year)


def run_backtest(
    bars: Bars,
    strategy: str,
    params: Mapping[str, object],
    initial_capital: float,
    start_time: int,
    end_time: int,
) -> BacktestResultData:
    """Trade `strategy` with `params` on the bars from start_time to end_time (epoch seconds).

    Raises ParamError for a bad strategy or parameter, a non-positive capital
    (field "initial_capital") or a window with fewer than 2 bars (field "start").
    """
    values = validate_params(strategy, params)
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ParamError("initial_capital", "initial_capital must be a positive number")
    first, last = _window(bars, start_time, end_time)
    wanted = STRATEGIES[strategy].positions(bars, values)

    time = bars.time[first : last + 1]
    opens = bars.open[first : last + 1]
    closes = bars.close[first : last + 1]
    m = time.shape[0]
    # held[j]: the position during bar j, filled at its open from the previous bar's close.
    held = np.zeros(m, dtype=np.int64)
    held[1:] = wanted[first:last]
    before = np.concatenate(([0], held[:-1]))
    changed = held != before
    is_entry = changed & (held != 0)
    is_exit = changed & (before != 0)
    entries = np.flatnonzero(is_entry)
    exits = np.flatnonzero(is_exit)
    sides = held[entries]
    entry_prices = opens[entries]
    exit_prices = opens[exits]
    exit_times = time[exits]
    if m and held[-1] != 0:
        exit_prices = np.append(exit_prices, closes[-1])
        exit_times = np.append(exit_times, time[-1])
    trade_returns = sides * (exit_prices / entry_prices - 1.0)
    capital = initial_capital * np.concatenate(([1.0], np.cumprod(1.0 + trade_returns)))

    if entries.size:
        trade_id = np.maximum(np.cumsum(is_entry) - 1, 0)
        closed = np.cumsum(is_exit)
        in_trade = capital[trade_id] * (1.0 + held * (closes / entry_prices[trade_id] - 1.0))
        equity = np.where(held != 0, in_trade, capital[closed])
    else:
        equity = np.full(m, initial_capital, dtype=np.float64)

    final = float(equity[-1])
    ratio = final / initial_capital
    years = float(time[-1] - time[0]) / (365.25 * DAY_SECONDS)
    if ratio <= 0:
        cagr = -100.0
    elif years > 0:
        cagr = (math.exp(min(math.log(ratio) / years, _MAX_LOG_GROWTH)) - 1.0) * 100.0
    else:
        cagr = 0.0
    peaks = np.maximum.accumulate(equity)
    drawdown = float(np.max(1.0 - equity / peaks)) * 100.0 if m else 0.0
    count = int(trade_returns.shape[0])
    wins = int(np.count_nonzero(trade_returns > 0))

    trades = tuple(
        TradeResult(
            entry_time=int(time[entries[k]]),
            exit_time=int(exit_times[k]),
            side="long" if sides[k] > 0 else "short",
            entry_price=round(float(entry_prices[k]), 4),
            exit_price=round(float(exit_prices[k]), 4),
            return_pct=round(float(trade_returns[k]) * 100.0, 2),
        )
        for k in range(count)
    )
    curve = tuple(
        EquityPoint(time=t, equity=round(e, 2))
        for t, e in zip(time.tolist(), equity.tolist(), strict=True)
    )
    return BacktestResultData(
        total_return=round((ratio - 1.0) * 100.0, 2),
        cagr=round(cagr, 2),
        sharpe=round(_sharpe(equity, periods_per_year(time)), 2),
        max_drawdown=round(drawdown, 2),
        win_rate=round(wins / count * 100.0, 2) if count else 0.0,
        trade_count=count,
        trades=trades,
        equity_curve=curve,
    )
