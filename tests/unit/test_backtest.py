"""Strategies, their parameters and the backtest engine, checked against trades worked by hand."""

from __future__ import annotations

import itertools
import math
from datetime import date

import numpy as np
import pytest

from market.backtest import BacktestResultData, periods_per_year, run_backtest
from market.bars import Bars
from market.calendar import daily_times
from market.history import daily_history
from market.indicators import rsi
from market.strategies import STRATEGIES, ParamError, validate_params

CAPITAL = 10_000.0


@pytest.fixture(scope="module")
def history() -> Bars:
    return daily_history(3, "SPY", date(2026, 11, 20))


def flat_bars(closes: list[float]) -> Bars:
    """Daily bars that open, close and trade at one price each day."""
    close = np.asarray(closes, dtype=np.float64)
    n = close.shape[0]
    return Bars(
        time=daily_times(date(2024, 1, 1), date(2026, 1, 1))[:n],
        open=close.copy(),
        high=close.copy(),
        low=close.copy(),
        close=close,
        volume=np.full(n, 1000, dtype=np.int64),
    )


def whole(bars: Bars) -> tuple[int, int]:
    return int(bars.time[0]), int(bars.time[-1])


# --- the engine by hand ---------------------------------------------------------------------


def test_buy_and_hold_earns_the_price_ratio(history: Bars) -> None:
    s, e = len(history) - 1000, len(history) - 200
    result = run_backtest(
        history, "buy_and_hold", {}, CAPITAL, int(history.time[s]), int(history.time[e])
    )
    ratio = float(history.close[e]) / float(history.open[s + 1])
    assert result.total_return == round((ratio - 1) * 100, 2)
    assert result.trade_count == 1
    (trade,) = result.trades
    assert (trade.entry_time, trade.exit_time) == (int(history.time[s + 1]), int(history.time[e]))
    assert trade.side == "long"
    assert trade.entry_price == round(float(history.open[s + 1]), 4)
    assert trade.exit_price == round(float(history.close[e]), 4)
    assert [p.time for p in result.equity_curve] == history.time[s : e + 1].tolist()
    assert result.equity_curve[0].equity == CAPITAL
    assert result.equity_curve[-1].equity == round(CAPITAL * ratio, 2)
    years = (int(history.time[e]) - int(history.time[s])) / (365.25 * 86400)
    assert result.cagr == pytest.approx((ratio ** (1 / years) - 1) * 100, abs=0.006)
    assert result.win_rate == (100.0 if ratio > 1 else 0.0)


def test_sma_crossover_on_steps_makes_the_trades_worked_by_hand() -> None:
    # 100 for 30 days, 120 for 10, then 130: SMA 5 > SMA 10 from day 30 (104 > 102) until both
    # equal 120 on day 39, again from day 40 (122 > 121) until both equal 130 on day 49.
    bars = flat_bars([100.0] * 30 + [120.0] * 10 + [130.0] * 20)
    result = run_backtest(bars, "sma_crossover", {"fast": 5, "slow": 10}, CAPITAL, *whole(bars))
    t = bars.time
    trades = [
        (x.entry_time, x.exit_time, x.side, x.entry_price, x.exit_price, x.return_pct)
        for x in result.trades
    ]
    assert trades == [
        (int(t[31]), int(t[40]), "long", 120.0, 130.0, 8.33),
        (int(t[41]), int(t[50]), "long", 130.0, 130.0, 0.0),
    ]
    assert result.trade_count == 2
    assert result.total_return == 8.33
    assert result.win_rate == 50.0
    assert result.max_drawdown == 0.0
    assert result.sharpe > 0
    equity = [p.equity for p in result.equity_curve]
    assert equity[:40] == [CAPITAL] * 40
    assert equity[40:] == [round(CAPITAL * 130 / 120, 2)] * 20


def test_shorts_profit_from_a_fall_when_allowed() -> None:
    bars = flat_bars([100.0] * 30 + [80.0] * 10 + [70.0] * 20)
    params = {"fast": 5, "slow": 10, "allow_short": True}
    result = run_backtest(bars, "sma_crossover", params, CAPITAL, *whole(bars))
    assert [(x.side, x.entry_price, x.exit_price, x.return_pct) for x in result.trades] == [
        ("short", 80.0, 70.0, 12.5),
        ("short", 70.0, 70.0, 0.0),
    ]
    assert result.total_return == 12.5
    long_only = run_backtest(bars, "sma_crossover", {"fast": 5, "slow": 10}, CAPITAL, *whole(bars))
    assert long_only.trade_count == 0
    assert long_only.total_return == 0.0
    assert {p.equity for p in long_only.equity_curve} == {CAPITAL}


def test_a_fall_during_a_trade_is_a_drawdown() -> None:
    bars = flat_bars([100.0, 100.0, 80.0, 120.0, 90.0])
    result = run_backtest(bars, "buy_and_hold", {}, CAPITAL, *whole(bars))
    assert [p.equity for p in result.equity_curve] == [CAPITAL, CAPITAL, 8000.0, 12000.0, 9000.0]
    assert result.max_drawdown == 25.0
    assert result.total_return == -10.0
    assert result.win_rate == 0.0


def test_an_open_position_is_closed_on_the_last_bar(history: Bars) -> None:
    result = run_backtest(history, "sma_crossover", {}, CAPITAL, *whole(history))
    last = result.trades[-1]
    times = [(x.entry_time, x.exit_time) for x in result.trades]
    assert all(a < b for a, b in times)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(times))
    compounded = math.prod(1 + x.return_pct / 100 for x in result.trades)
    assert result.total_return == pytest.approx((compounded - 1) * 100, abs=0.05)
    assert result.equity_curve[-1].time == int(history.time[-1])
    if last.exit_time == int(history.time[-1]):
        assert last.exit_price == round(float(history.close[-1]), 4)


def test_the_window_trades_only_inside_and_never_looks_ahead(history: Bars) -> None:
    start, end = int(history.time[-800]) - 3600, int(history.time[-300]) + 3600
    for name in STRATEGIES:
        full = run_backtest(history, name, {}, CAPITAL, start, end)
        cut = history.take(slice(0, len(history) - 300 + 1))
        assert run_backtest(cut, name, {}, CAPITAL, start, end) == full, name
        assert full.equity_curve[0].time == int(history.time[-800])
        assert full.equity_curve[-1].time == int(history.time[-300])
        assert all(start < x.entry_time <= x.exit_time <= end for x in full.trades)
        assert full.max_drawdown >= 0
        assert 0 <= full.win_rate <= 100


def test_same_request_same_result(history: Bars) -> None:
    params = {"period": 10, "lower": 25.0, "upper": 75}
    first = run_backtest(history, "rsi_reversion", params, CAPITAL, *whole(history))
    again = run_backtest(history, "rsi_reversion", params, CAPITAL, *whole(history))
    assert isinstance(first, BacktestResultData)
    assert first == again
    assert first.trade_count > 0


def test_rsi_reversion_holds_from_oversold_to_overbought(history: Bars) -> None:
    params = validate_params("rsi_reversion", {"period": 14, "lower": 30, "upper": 70})
    positions = STRATEGIES["rsi_reversion"].positions(history, params)
    r = rsi(history.close, 14)
    state = 0
    for i, value in enumerate(r):
        if value < 30:
            state = 1
        elif value > 70:
            state = 0
        assert positions[i] == state, i


def test_bollinger_reversion_buys_under_the_band() -> None:
    closes = [100.0, 101.0] * 15 + [90.0, 92.0, 95.0, 99.0, 102.0, 101.0]
    bars = flat_bars(closes)
    positions = STRATEGIES["bollinger_reversion"].positions(
        bars, validate_params("bollinger_reversion", {})
    )
    # In at the 90 close (under the lower band), out at 102 (over the middle band).
    assert positions.tolist()[30:] == [1, 1, 1, 1, 0, 0]
    assert set(positions.tolist()[:30]) == {0}


# --- windows and parameters -----------------------------------------------------------------


def test_a_window_needs_two_bars(history: Bars) -> None:
    t = int(history.time[100])
    with pytest.raises(ParamError) as one_bar:
        run_backtest(history, "buy_and_hold", {}, CAPITAL, t, t)
    assert one_bar.value.field == "start"
    with pytest.raises(ParamError) as backwards:
        run_backtest(history, "buy_and_hold", {}, CAPITAL, t, t - 86400 * 10)
    assert backwards.value.field == "start"
    with pytest.raises(ParamError) as capital:
        run_backtest(history, "buy_and_hold", {}, 0.0, *whole(history))
    assert capital.value.field == "initial_capital"


def test_defaults_and_coercion() -> None:
    assert validate_params("sma_crossover", {}) == {"fast": 20, "slow": 50, "allow_short": False}
    assert validate_params("sma_crossover", {"fast": 10.0, "allow_short": True}) == {
        "fast": 10,
        "slow": 50,
        "allow_short": True,
    }
    assert validate_params("rsi_reversion", {"lower": 25}) == {
        "period": 14,
        "lower": 25.0,
        "upper": 70.0,
    }
    assert validate_params("buy_and_hold", {}) == {}
    for name, spec in STRATEGIES.items():
        defaults = {p: s.default for p, s in spec.params.items()}
        assert validate_params(name, {}) == defaults
        for p in spec.params.values():
            assert p.type in ("int", "float", "bool")
            if p.type != "bool":
                assert p.min is not None
                assert p.max is not None
                assert p.min <= p.default <= p.max


@pytest.mark.parametrize(
    ("strategy", "params", "field", "words"),
    [
        ("momentum", {}, "strategy", ["momentum", "buy_and_hold", "sma_crossover"]),
        ("sma_crossover", {"speed": 3}, "params.speed", ["speed", "fast", "slow"]),
        ("sma_crossover", {"fast": 2}, "params.fast", ["fast", "5", "100"]),
        ("sma_crossover", {"slow": 301}, "params.slow", ["slow", "10", "300"]),
        ("sma_crossover", {"fast": 20.5}, "params.fast", ["fast", "integer"]),
        ("sma_crossover", {"fast": "20"}, "params.fast", ["fast", "integer"]),
        ("sma_crossover", {"fast": True}, "params.fast", ["fast", "integer"]),
        ("sma_crossover", {"allow_short": 1}, "params.allow_short", ["allow_short", "boolean"]),
        ("sma_crossover", {"fast": 60, "slow": 50}, "params.fast", ["fast", "slow", "less"]),
        ("sma_crossover", {"fast": 50, "slow": 50}, "params.fast", ["less"]),
        ("rsi_reversion", {"lower": 50, "upper": 50}, "params.lower", ["lower", "upper"]),
        ("rsi_reversion", {"upper": float("nan")}, "params.upper", ["upper", "50", "95"]),
        ("macd_trend", {"fast": 30, "slow": 20}, "params.fast", ["fast", "slow"]),
        ("bollinger_reversion", {"std_dev": 5}, "params.std_dev", ["std_dev", "0.5", "4"]),
        ("buy_and_hold", {"fast": 5}, "params.fast", ["fast", "none"]),
    ],
)
def test_bad_parameters_name_their_field(
    strategy: str, params: dict[str, object], field: str, words: list[str]
) -> None:
    with pytest.raises(ParamError) as error:
        validate_params(strategy, params)
    assert error.value.field == field
    for word in words:
        assert word in str(error.value)
    assert isinstance(error.value, ValueError)


def test_sharpe_is_annualised_by_the_bar_spacing() -> None:
    daily = daily_times(date(2024, 1, 1), date(2024, 12, 31))
    assert periods_per_year(daily) == 252
    assert periods_per_year(daily[::5]) == 52
    assert periods_per_year(daily[::21]) == 12
    session = 14 * 3600 + 1800 + 300 * np.arange(78)
    five_minutes = (daily[:10, None] + session[None, :]).ravel()
    assert periods_per_year(five_minutes) == 252 * 78
    four_hours = (daily[:10, None] + np.array([52200, 66600])[None, :]).ravel()
    assert periods_per_year(four_hours) == 252 * 2
