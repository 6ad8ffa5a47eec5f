"""Options signals, insights and opportunities as a trader reads them."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from market.bars import Bars
from market.calendar import daily_times
from market.history import daily_history
from market.indicators import IndicatorFrame, compute_indicators
from market.insights import (
    annualised_volatility,
    insights_at,
    macd_state,
    max_drawdown_pct,
    sentiment_label,
    support_resistance,
)
from market.opportunities import OpportunityInput, opportunities
from market.options import (
    MIN_EXPIRY_DAYS,
    black_scholes,
    expiration_for,
    options_signals,
    priority_of,
    strike_for,
)
from market.signals import SIGNAL_TIMEFRAMES, ensemble, latest_signal, signal_at

ASOF = date(2026, 11, 20)
SYMBOLS = ("AAPL", "MSFT", "XOM", "JPM", "TSLA", "KO", "NVDA", "BRK-B")


@pytest.fixture(scope="module")
def universe() -> dict[str, tuple[Bars, IndicatorFrame]]:
    out = {}
    for symbol in SYMBOLS:
        bars = daily_history(5, symbol, ASOF)
        out[symbol] = (bars, compute_indicators(bars))
    return out


def bar_date(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, tz=UTC).date()


# --- options --------------------------------------------------------------------------------


def test_options_come_from_the_newest_trades_of_the_last_50_bars(
    universe: dict[str, tuple[Bars, IndicatorFrame]],
) -> None:
    for symbol, (bars, ind) in universe.items():
        ens = ensemble(bars, ind)
        n = len(bars)
        trades = [i for i in range(n - 1, n - 51, -1) if ens.type[i] != 0][:3]
        options = options_signals(symbol, "1d", bars, ind)
        assert [o.signal_id for o in options] == [f"{symbol}-1d-{bars.time[i]}" for i in trades]
        for o, i in zip(options, trades, strict=True):
            signal = signal_at(symbol, "1d", bars, ind, i)
            assert o.type == {"BUY": "CALL", "SELL": "PUT"}[signal.type]
            assert o.id == f"{signal.id}-{o.type}"
            assert o.confidence == signal.confidence
            assert o.timestamp == signal.timestamp
            assert o.symbol == symbol


def test_option_levels_make_sense(universe: dict[str, tuple[Bars, IndicatorFrame]]) -> None:
    seen_types = set()
    for symbol, (bars, ind) in universe.items():
        for o in options_signals(symbol, "1d", bars, ind, count=5):
            seen_types.add(o.type)
            spot = float(o.key_indicators["underlying_price"])
            # Slightly out of the money, on a listed strike.
            if o.type == "CALL":
                assert spot < o.strike_price <= spot * 1.01 + 5
            else:
                assert spot * 0.99 - 5 <= o.strike_price < spot
            lo, hi = o.entry_zone
            assert 0 < o.stop_loss < lo <= o.entry_price <= hi
            prices = [t.price for t in o.targets]
            assert len(prices) == 3
            assert o.entry_price < prices[0] < prices[1] < prices[2]
            assert sum(t.exit_pct for t in o.targets) == 100
            assert o.risk_reward_ratio > 0
            assert o.priority == priority_of(o.confidence)
            assert o.hold_duration
            assert o.setup_name.endswith(o.type.title())
            assert o.exit_rules
            assert all(isinstance(r, str) for r in o.exit_rules)
            assert all(isinstance(v, str) or math.isfinite(v) for v in o.key_indicators.values())
    assert seen_types == {"CALL", "PUT"}


def test_expiration_is_a_friday_far_enough_after_the_bar(
    universe: dict[str, tuple[Bars, IndicatorFrame]],
) -> None:
    bars, ind = universe["AAPL"]
    for timeframe in SIGNAL_TIMEFRAMES:
        for o in options_signals("AAPL", timeframe, bars, ind, count=3):
            expiry = date.fromisoformat(o.expiration_date)
            signal_day = date.fromisoformat(o.timestamp[:10])
            assert expiry.weekday() == 4
            days = (expiry - signal_day).days
            assert MIN_EXPIRY_DAYS[timeframe] <= days < MIN_EXPIRY_DAYS[timeframe] + 7


def test_expiration_and_strike_by_hand() -> None:
    friday = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    assert expiration_for(friday, "5m") == date(2026, 11, 27)  # exactly 7 days: that Friday
    assert expiration_for(friday, "1d") == date(2026, 12, 25)  # 30 days is a Sunday
    assert expiration_for(friday + 3 * 86400, "1h") == date(2026, 12, 4)
    assert strike_for("CALL", 101.0) == 103.0  # 102.01 up to the next whole dollar
    assert strike_for("PUT", 101.0) == 99.0
    assert strike_for("CALL", 24.0) == 24.5
    assert strike_for("PUT", 24.0) == 23.5
    assert strike_for("CALL", 300.0) == 305.0
    assert strike_for("PUT", 300.0) == 295.0
    assert [priority_of(c) for c in (75, 74.99, 60, 59.99)] == ["HIGH", "MEDIUM", "MEDIUM", "LOW"]


def test_black_scholes_obeys_put_call_parity() -> None:
    spot, strike, years, vol = 100.0, 105.0, 0.25, 0.3
    call = black_scholes("CALL", spot, strike, years, vol)
    put = black_scholes("PUT", spot, strike, years, vol)
    assert call - put == pytest.approx(spot - strike * math.exp(-0.04 * years), abs=1e-9)
    assert 0 < call < spot
    assert 0 < put < strike
    assert black_scholes("CALL", 110.0, 100.0, 0.0, vol) == 10.0


def test_options_are_deterministic_and_respect_count(
    universe: dict[str, tuple[Bars, IndicatorFrame]],
) -> None:
    bars, ind = universe["MSFT"]
    first = options_signals("MSFT", "4h", bars, ind, count=2)
    assert first == options_signals("MSFT", "4h", bars, compute_indicators(bars), count=2)
    assert len(first) <= 2
    assert options_signals("MSFT", "4h", bars, ind, count=0) == []
    with pytest.raises(ValueError, match="timeframe"):
        options_signals("MSFT", "1wk", bars, ind)


# --- insights -------------------------------------------------------------------------------


def test_insights_levels_and_labels(universe: dict[str, tuple[Bars, IndicatorFrame]]) -> None:
    labels = set()
    for symbol, (bars, ind) in universe.items():
        for i in range(len(bars) - 60, len(bars), 7):
            signal = signal_at(symbol, "1d", bars, ind, i)
            result = insights_at(signal, bars, ind, i)
            close = float(bars.close[i])
            t = result.technical
            assert len(t.support) == 3
            assert len(t.resistance) == 3
            assert all(s < close for s in t.support)
            assert all(r > close for r in t.resistance)
            assert list(t.support) == sorted(t.support, reverse=True)
            assert list(t.resistance) == sorted(t.resistance)
            assert -1 <= result.sentiment.score <= 1
            labels.add(result.sentiment.label)
            if signal.type == "BUY":
                assert result.sentiment.label in ("bullish", "very_bullish")
            elif signal.type == "SELL":
                assert result.sentiment.label in ("bearish", "very_bearish")
            else:
                assert result.sentiment.label == "neutral"
            assert result.signal_id == signal.id
            assert result.symbol == symbol
            assert 0 <= result.prediction.confidence <= 100
            assert result.prediction.horizon_days > 0
            if signal.type != "HOLD":
                assert result.prediction.target_price == signal.take_profit
            assert result.risk.volatility > 0
            assert result.risk.max_drawdown >= 0
            assert result.summary.endswith(".")
            assert symbol in result.summary
    assert {"bullish", "bearish", "neutral"} <= labels


def test_insights_read_only_the_past(universe: dict[str, tuple[Bars, IndicatorFrame]]) -> None:
    bars, ind = universe["XOM"]
    i = len(bars) - 30
    signal = signal_at("XOM", "1d", bars, ind, i)
    head = bars.take(slice(0, i + 1))
    assert insights_at(signal, bars, ind, i) == insights_at(
        signal, head, compute_indicators(head), i
    )


def test_sentiment_labels_and_macd_states() -> None:
    assert [sentiment_label(s) for s in (-1, -0.6, -0.3, 0, 0.25, 0.59, 0.6)] == [
        "very_bearish",
        "very_bearish",
        "bearish",
        "neutral",
        "bullish",
        "bullish",
        "very_bullish",
    ]
    hist = np.array([np.nan, -1.0, 0.5, 0.7, -0.2, -0.3, 0.0])
    frame = IndicatorFrame(**{f.name: hist for f in dataclasses.fields(IndicatorFrame)})
    states = [macd_state(frame, i) for i in range(hist.shape[0])]
    assert states == [
        "neutral",
        "bearish",
        "bullish_crossover",
        "bullish",
        "bearish_crossover",
        "bearish",
        "neutral",
    ]


def test_risk_figures_by_hand() -> None:
    close = np.array([100.0, 110.0, 99.0, 120.0, 90.0, 95.0])
    # Peak 120 then 90: a 25 % drawdown.
    assert max_drawdown_pct(close, 5) == pytest.approx(25.0)
    returns = np.log(close[1:] / close[:-1])
    expected = returns.std(ddof=1) * math.sqrt(252)
    assert annualised_volatility(close, 5, 252) == pytest.approx(expected)
    assert annualised_volatility(close, 0, 252) == 0.0


def test_levels_always_three_even_in_a_flat_market() -> None:
    n = 30
    close = np.full(n, 50.0)
    bars = Bars(
        time=daily_times(date(2024, 1, 1), date(2025, 1, 1))[:n],
        open=close,
        high=close,
        low=close,
        close=close,
        volume=np.full(n, 1000, dtype=np.int64),
    )
    support, resistance = support_resistance(bars, compute_indicators(bars), n - 1)
    assert len(support) == 3
    assert len(resistance) == 3
    assert all(0 < s < 50 for s in support)
    assert all(r > 50 for r in resistance)
    assert len(set(support)) == 3
    assert len(set(resistance)) == 3


# --- opportunities --------------------------------------------------------------------------


def candidates(universe: dict[str, tuple[Bars, IndicatorFrame]]) -> list[OpportunityInput]:
    return [
        OpportunityInput(
            symbol=symbol,
            name=f"{symbol} Inc.",
            sector="Technology",
            bars=bars,
            ind=ind,
            signal=latest_signal(symbol, "1d", bars, ind),
        )
        for symbol, (bars, ind) in universe.items()
    ]


def test_opportunities_rank_trades_only(universe: dict[str, tuple[Bars, IndicatorFrame]]) -> None:
    inputs = candidates(universe)
    # Pin a mix: the scan must drop HOLDs whatever the generator gives today.
    inputs[0] = dataclasses.replace(
        inputs[0], signal=dataclasses.replace(inputs[0].signal, type="HOLD")
    )
    found = opportunities(inputs, limit=10)
    trades = {c.symbol: c.signal for c in inputs if c.signal.type != "HOLD"}
    assert {o.symbol for o in found} == set(trades)
    assert [(-o.ai_score, o.symbol) for o in found] == sorted(
        (-o.ai_score, o.symbol) for o in found
    )
    for o in found:
        signal = trades[o.symbol]
        assert o.id == f"opp-{signal.id}"
        assert o.type == {"BUY": "CALL", "SELL": "PUT"}[signal.type]
        assert o.potential_return > 0
        assert o.momentum in ("strong", "moderate", "building")
        assert isinstance(o.ai_score, int)
        assert 0 <= o.ai_score <= 100
        assert o.current_price == round(float(universe[o.symbol][0].close[-1]), 4)
        assert o.volume == int(universe[o.symbol][0].volume[-1])
        assert 0 < o.volatility < 5
        assert o.name == f"{o.symbol} Inc."
        assert o.timeframe == "1d"
    assert opportunities(inputs, limit=2) == found[:2]
    assert opportunities(inputs, limit=0) == []
    assert opportunities(inputs, limit=10) == found


def test_potential_return_is_the_distance_to_the_target(
    universe: dict[str, tuple[Bars, IndicatorFrame]],
) -> None:
    inputs = candidates(universe)
    buy = dataclasses.replace(inputs[0].signal, type="BUY", entry=100.0, take_profit=106.0)
    sell = dataclasses.replace(
        inputs[1].signal, type="SELL", entry=100.0, stop_loss=104.0, take_profit=94.0
    )
    found = opportunities(
        [dataclasses.replace(inputs[0], signal=buy), dataclasses.replace(inputs[1], signal=sell)],
        limit=5,
    )
    by_symbol = {o.symbol: o for o in found}
    assert by_symbol[buy.symbol].potential_return == 6.0
    assert by_symbol[sell.symbol].potential_return == 6.0
    assert by_symbol[sell.symbol].type == "PUT"


def test_expiry_helper_agrees_with_calendar_days() -> None:
    start = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
    for day in range(14):
        epoch = start + day * 86400
        for timeframe, minimum in MIN_EXPIRY_DAYS.items():
            expiry = expiration_for(epoch, timeframe)
            gap = expiry - bar_date(epoch)
            assert expiry.weekday() == 4
            assert timedelta(days=minimum) <= gap < timedelta(days=minimum + 7)
