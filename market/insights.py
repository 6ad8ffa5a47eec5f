"""Insights on a Signal: sentiment, technical levels, a prediction and risk figures.

Everything is read from the bars up to the signal's bar (never after it), so the insights of a
signal id stay the same as history grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.bars import Bars, FloatArray
from market.indicators import IndicatorFrame
from market.signals import (
    BARS_PER_YEAR,
    SCORE_THRESHOLD,
    TARGET_ATR,
    SignalResult,
    atr_at,
    ensemble,
    tail,
)

VOLATILITY_BARS = 60
DRAWDOWN_BARS = 252
# Bars each side a high (low) must top (undercut) to count as a swing high (low).
SWING_WIDTH = 2
SWING_LOOKBACK = 120
# Levels closer than this fraction of the close to one already kept say nothing new.
LEVEL_SPACING = 0.0025
HORIZON_DAYS = {"5m": 1, "15m": 1, "30m": 2, "1h": 3, "4h": 5, "1d": 10}


@dataclass(frozen=True, slots=True)
class Sentiment:
    """The agents' weighted score -1..1 and its label."""

    score: float
    label: str


@dataclass(frozen=True, slots=True)
class Technical:
    """RSI, the MACD state and three support and resistance levels, nearest first."""

    rsi_14: float | None
    macd_state: str
    support: tuple[float, ...]
    resistance: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Prediction:
    """Where the price is expected within `horizon_days`, and how sure the ensemble is."""

    target_price: float
    horizon_days: int
    confidence: float


@dataclass(frozen=True, slots=True)
class RiskFigures:
    """Annualised volatility (a fraction), max drawdown (a percent) and the Sharpe ratio."""

    volatility: float
    max_drawdown: float
    sharpe_ratio: float


@dataclass(frozen=True, slots=True)
class InsightsResult:
    """The insights of one Signal with exactly the wire fields of the contract."""

    signal_id: str
    symbol: str
    sentiment: Sentiment
    technical: Technical
    prediction: Prediction
    risk: RiskFigures
    summary: str


def sentiment_label(score: float) -> str:
    """very_bearish <= -0.6 < bearish <= -0.25 < neutral < 0.25 <= bullish < 0.6 <= very_bullish.

    The inner bounds are the ensemble's own, so a BUY is at least bullish and a SELL bearish.
    """
    if score <= -0.6:
        return "very_bearish"
    if score <= -SCORE_THRESHOLD:
        return "bearish"
    if score < SCORE_THRESHOLD:
        return "neutral"
    if score < 0.6:
        return "bullish"
    return "very_bullish"


def macd_state(ind: IndicatorFrame, i: int) -> str:
    """A histogram sign change at bar i is a crossover; otherwise its sign; undefined: neutral."""
    hist = float(ind.macd_hist[i])
    prev = float(ind.macd_hist[i - 1]) if i > 0 else float("nan")
    if not np.isfinite(hist) or hist == 0:
        return "neutral"
    if hist > 0:
        return "bullish_crossover" if np.isfinite(prev) and prev <= 0 else "bullish"
    return "bearish_crossover" if np.isfinite(prev) and prev >= 0 else "bearish"


def annualised_volatility(close: FloatArray, i: int, bars_per_year: int) -> float:
    """Sample deviation of the log returns of the last 60 bars up to i, annualised; 0 if < 2."""
    window = close[max(i - VOLATILITY_BARS, 0) : i + 1]
    returns = np.diff(np.log(window))
    if returns.size < 2:
        return 0.0
    return float(np.std(returns, ddof=1) * np.sqrt(bars_per_year))


def max_drawdown_pct(close: FloatArray, i: int) -> float:
    """The deepest fall from a running peak over the last 252 closes up to i, in percent."""
    window = close[max(i - DRAWDOWN_BARS + 1, 0) : i + 1]
    if window.size == 0:
        return 0.0
    return float(np.max(1.0 - window / np.maximum.accumulate(window)) * 100.0)


def sharpe_ratio(close: FloatArray, i: int, bars_per_year: int) -> float:
    """Mean over deviation of the simple returns of the last 252 bars up to i, annualised."""
    window = close[max(i - DRAWDOWN_BARS + 1, 0) : i + 1]
    returns = np.diff(window) / window[:-1]
    if returns.size < 2:
        return 0.0
    deviation = float(np.std(returns, ddof=1))
    if deviation == 0:
        return 0.0
    return float(np.mean(returns) / deviation * np.sqrt(bars_per_year))


def _swings(values: FloatArray, highs: bool) -> FloatArray:
    """Values that are the extreme of the SWING_WIDTH bars each side of them."""
    span = 2 * SWING_WIDTH + 1
    if values.size < span:
        return np.empty(0, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(values, span)
    centre = values[SWING_WIDTH : values.size - SWING_WIDTH]
    extreme: FloatArray = windows.max(axis=1) if highs else windows.min(axis=1)
    swings: FloatArray = centre[centre == extreme]
    return swings


def _pick(close: float, tiers: list[list[float]], below: bool) -> tuple[float, ...]:
    """Three levels on one side of `close`, nearest first, filling from the tiers in order."""
    gap = close * LEVEL_SPACING
    kept: list[float] = []
    for tier in tiers:
        pool = sorted(
            {v for v in tier if (v < close - gap if below else v > close + gap)},
            reverse=below,
        )
        for level in pool:
            if len(kept) == 3:
                break
            if all(abs(level - k) >= gap for k in kept):
                kept.append(level)
    kept.sort(reverse=below)
    return tuple(round(v, 4) for v in kept[:3])


def support_resistance(
    bars: Bars, ind: IndicatorFrame, i: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Three supports below and three resistances above the close at bar i, nearest first.

    From the swing lows/highs of the last 120 bars first, then the classic floor pivots of bar
    i (S1-S3, R1-R3), then steps of one ATR, so there are always three on each side.
    """
    close = float(bars.close[i])
    lo = max(i - SWING_LOOKBACK, 0)
    highs, lows = bars.high[lo : i + 1], bars.low[lo : i + 1]
    high, low = float(bars.high[i]), float(bars.low[i])
    pivot = (high + low + close) / 3.0
    pivot_support = [2 * pivot - high, pivot - (high - low), low - 2 * (high - pivot)]
    pivot_resistance = [2 * pivot - low, pivot + (high - low), high + 2 * (pivot - low)]
    # One ATR (at least two level spacings, at most a quarter of the price) keeps the fallback
    # steps distinct and the third support above zero.
    step = min(max(atr_at(bars, ind, i), 2 * close * LEVEL_SPACING), close / 4.0)
    support = _pick(
        close,
        [
            [float(v) for v in _swings(lows, highs=False)],
            [float(v) for v in pivot_support],
            [close - k * step for k in (1, 2, 3)],
        ],
        below=True,
    )
    resistance = _pick(
        close,
        [
            [float(v) for v in _swings(highs, highs=True)],
            [float(v) for v in pivot_resistance],
            [close + k * step for k in (1, 2, 3)],
        ],
        below=False,
    )
    return support, resistance


def insights_at(signal: SignalResult, bars: Bars, ind: IndicatorFrame, i: int) -> InsightsResult:
    """The insights of `signal`, the Signal at bar i of `bars` (with its indicators `ind`)."""
    n = len(bars)
    if not 0 <= i < n:
        raise IndexError(f"bar {i} out of range for {n} bars")
    bars_per_year = BARS_PER_YEAR[signal.timeframe]
    part, part_ind, lo = tail(bars.take(slice(0, i + 1)), ind.take(slice(0, i + 1)), i)
    score = float(ensemble(part, part_ind).score[i - lo])
    label = sentiment_label(score)
    close = float(bars.close[i])
    rsi = float(ind.rsi_14[i])
    support, resistance = support_resistance(bars, ind, i)
    state = macd_state(ind, i)

    if signal.type == "HOLD":
        target = close + score * TARGET_ATR * atr_at(bars, ind, i)
    else:
        target = signal.take_profit
    prediction = Prediction(
        target_price=round(target, 4),
        horizon_days=HORIZON_DAYS[signal.timeframe],
        confidence=round(min(signal.confidence * (0.7 + 0.3 * abs(score)), 100.0), 2),
    )
    risk = RiskFigures(
        volatility=round(annualised_volatility(bars.close, i, bars_per_year), 4),
        max_drawdown=round(max_drawdown_pct(bars.close, i), 2),
        sharpe_ratio=round(sharpe_ratio(bars.close, i, bars_per_year), 2),
    )
    rsi_text = f"RSI {rsi:.1f}" if np.isfinite(rsi) else "RSI not yet defined"
    summary = (
        f"{signal.symbol} looks {label.replace('_', ' ')} on the {signal.timeframe} chart: "
        f"a {signal.type} signal at {close:.2f} with {signal.confidence:.0f}% confidence, "
        f"{rsi_text}, MACD {state.replace('_', ' ')}, support {support[0]:.2f} and "
        f"resistance {resistance[0]:.2f}."
    )
    return InsightsResult(
        signal_id=signal.id,
        symbol=signal.symbol,
        sentiment=Sentiment(score=round(score, 2), label=label),
        technical=Technical(
            rsi_14=round(rsi, 2) if np.isfinite(rsi) else None,
            macd_state=state,
            support=support,
            resistance=resistance,
        ),
        prediction=prediction,
        risk=risk,
        summary=summary,
    )
