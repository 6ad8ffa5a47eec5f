"""The ensemble: a BUY/SELL/HOLD Signal per bar from the agents' confidence-weighted votes.

Both backends serve signals from these functions, so a signal id names the same signal (type,
confidence, levels) on either of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from market.agents import (
    AGENT_LOOKBACK,
    AGENTS,
    BUY,
    SELL,
    VOTE_NAMES,
    Int8Array,
    agent_votes,
    ma_crosses,
)
from market.bars import Bars, FloatArray
from market.calendar import iso_ms
from market.indicators import IndicatorFrame

SIGNAL_TIMEFRAMES = ("5m", "15m", "30m", "1h", "4h", "1d")
# Bars in a trading year per timeframe: 252 sessions of 6.5 hours; intraday buckets align to the
# session open, so a session holds 78 5m, 26 15m, 13 30m, 7 1h (the last one short) and 2 4h bars.
BARS_PER_YEAR: dict[str, int] = {
    "5m": 78 * 252,
    "15m": 26 * 252,
    "30m": 13 * 252,
    "1h": 7 * 252,
    "4h": 2 * 252,
    "1d": 252,
}
# |weighted score| from which the ensemble takes a side; below it, HOLD.
SCORE_THRESHOLD = 0.25
STOP_ATR = 2.0
TARGET_ATR = 3.0
TYPE_NAMES = {BUY: "BUY", SELL: "SELL", 0: "HOLD"}
# Every pattern a signal can carry, with the name people read (options setups, opportunities).
PATTERN_TITLES = {
    "golden_cross": "Golden Cross",
    "death_cross": "Death Cross",
    "oversold_bounce": "Oversold Bounce",
    "overbought_reversal": "Overbought Reversal",
    "bollinger_breakout": "Bollinger Breakout",
    "macd_crossover": "MACD Crossover",
    "trend_continuation": "Trend Continuation",
    "momentum_shift": "Momentum Shift",
    "consolidation": "Consolidation",
}

_SYMBOL = re.compile(r"[A-Z0-9.\-^]{1,12}", re.ASCII)
_EPOCH = re.compile(r"[0-9]{1,12}", re.ASCII)


@dataclass(frozen=True, slots=True)
class AgentVote:
    """One agent's vote on the signal's bar."""

    agent: str
    vote: str
    confidence: float


@dataclass(frozen=True, slots=True)
class SignalIndicators:
    """The indicator values a Signal shows; None where not yet defined."""

    rsi_14: float | None
    macd_hist: float | None
    trend: str
    volume_ratio: float | None


@dataclass(frozen=True, slots=True)
class SignalResult:
    """A Signal with exactly the wire fields of the contract."""

    id: str
    symbol: str
    type: str
    confidence: float
    entry: float
    stop_loss: float
    take_profit: float
    timeframe: str
    risk: str
    pattern: str
    reasoning: tuple[str, ...]
    agents: tuple[AgentVote, ...]
    indicators: SignalIndicators
    timestamp: str


@dataclass(frozen=True, slots=True)
class EnsembleArrays:
    """The ensemble on every bar: type code (1 BUY, -1 SELL, 0 HOLD), confidence 0-100 and the
    weighted score -1..1, plus the agents' own votes and confidences (agents x bars)."""

    type: Int8Array
    confidence: FloatArray
    score: FloatArray
    votes: Int8Array
    confidences: FloatArray


def ensemble(bars: Bars, ind: IndicatorFrame) -> EnsembleArrays:
    """The ensemble's decision on every bar.

    Rule: with w = confidence / 100 of each agent that has an opinion (confidence > 0), the
    weighted score is (sum w of BUY votes - sum w of SELL votes) / sum w of all votes, in -1..1.
    A score >= 0.25 is BUY, <= -0.25 SELL, anything weaker HOLD. A BUY/SELL's confidence is
    half the mean confidence of the agents that agree plus 60 x |score| (capped at 100); a
    HOLD's is 30 + 40 x (1 - |score| / 0.25), so a perfectly balanced panel holds at 70. With
    no agent having an opinion (too little history) the bar is HOLD with confidence 0.
    """
    votes, confs = agent_votes(bars, ind)
    weights = confs / 100.0
    buy_w = np.where(votes == BUY, weights, 0.0).sum(axis=0)
    sell_w = np.where(votes == SELL, weights, 0.0).sum(axis=0)
    total = weights.sum(axis=0)
    has_opinion = total > 0
    score = np.divide(buy_w - sell_w, total, out=np.zeros_like(total), where=has_opinion)
    kind = np.where(
        score >= SCORE_THRESHOLD, BUY, np.where(score <= -SCORE_THRESHOLD, SELL, 0)
    ).astype(np.int8)
    agree = (votes == kind[None, :]) & (confs > 0)
    agree_count = agree.sum(axis=0)
    agree_mean = np.divide(
        np.where(agree, confs, 0.0).sum(axis=0),
        agree_count,
        out=np.zeros_like(total),
        where=agree_count > 0,
    )
    directional = 0.5 * agree_mean + 60.0 * np.abs(score)
    holding = np.where(has_opinion, 30.0 + 40.0 * (1.0 - np.abs(score) / SCORE_THRESHOLD), 0.0)
    confidence = np.clip(np.where(kind != 0, directional, holding), 0.0, 100.0)
    return EnsembleArrays(
        type=kind, confidence=confidence, score=score, votes=votes, confidences=confs
    )


def trend_at(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    """ "up" when SMA 20 > SMA 50 and the close is above SMA 50, "down" mirrored, else "flat"."""
    fast, slow, close = float(ind.sma_20[i]), float(ind.sma_50[i]), float(bars.close[i])
    if not (np.isfinite(fast) and np.isfinite(slow)):
        return "flat"
    if fast > slow and close > slow:
        return "up"
    if fast < slow and close < slow:
        return "down"
    return "flat"


def atr_at(bars: Bars, ind: IndicatorFrame, i: int) -> float:
    """ATR(14) at bar i; before it is defined, the bar's own range, else 1 % of the close."""
    value = float(ind.atr_14[i])
    if np.isfinite(value) and value > 0:
        return value
    bar_range = float(bars.high[i] - bars.low[i])
    return bar_range if bar_range > 0 else abs(float(bars.close[i])) * 0.01


def risk_label(atr: float, price: float) -> str:
    """LOW under 1.5 % ATR/price, MEDIUM under 3 %, else HIGH."""
    ratio = atr / price if price > 0 else float("inf")
    if ratio < 0.015:
        return "LOW"
    if ratio < 0.03:
        return "MEDIUM"
    return "HIGH"


def _optional(value: float, ndigits: int) -> float | None:
    return round(value, ndigits) if np.isfinite(value) else None


def _window(i: int, bars_back: int) -> slice:
    return slice(max(i - bars_back, 0), i + 1)


def pattern_at(bars: Bars, ind: IndicatorFrame, kind: int, i: int) -> str:
    """The setup a signal of type `kind` at bar i belongs to, first match wins.

    golden_cross / death_cross (SMA 20 crossed SMA 50 in the last 5 bars), oversold_bounce /
    overbought_reversal (RSI beyond 30/70 in the last 5 bars), bollinger_breakout (close
    outside the bands), macd_crossover (histogram changed sign in the last 3 bars),
    trend_continuation (signal along the trend), momentum_shift (any other BUY/SELL),
    consolidation (HOLD).
    """
    recent = ind.take(_window(i, 5))
    golden, death = ma_crosses(recent)
    if golden.any() and kind != SELL:
        return "golden_cross"
    if death.any() and kind != BUY:
        return "death_cross"
    rsi = recent.rsi_14[np.isfinite(recent.rsi_14)]
    if kind == BUY and rsi.size and rsi.min() < 30:
        return "oversold_bounce"
    if kind == SELL and rsi.size and rsi.max() > 70:
        return "overbought_reversal"
    close = float(bars.close[i])
    if close > float(ind.bb_upper[i]) or close < float(ind.bb_lower[i]):
        return "bollinger_breakout"
    hist = ind.macd_hist[_window(i, 3)]
    signs = np.sign(hist[np.isfinite(hist)])
    if signs.size > 1 and np.any(signs[1:] != signs[:-1]) and (kind == 0 or kind == signs[-1]):
        return "macd_crossover"
    if kind == 0:
        return "consolidation"
    trend = trend_at(bars, ind, i)
    if (kind == BUY and trend == "up") or (kind == SELL and trend == "down"):
        return "trend_continuation"
    return "momentum_shift"


def _reasoning(bars: Bars, ind: IndicatorFrame, ens: EnsembleArrays, i: int) -> tuple[str, ...]:
    kind = int(ens.type[i])
    votes, confs = ens.votes[:, i], ens.confidences[:, i]
    active = [a for a in range(len(AGENTS)) if confs[a] > 0]
    if not active:
        return ("Not enough history yet for the indicators the agents read",)
    # Agents that agree with the signal first, strongest first; the agent order breaks ties.
    active.sort(key=lambda a: (int(votes[a]) != kind, -float(confs[a]), a))
    lines = [AGENTS[a].explain(bars, ind, i) for a in active]
    score = float(ens.score[i])
    if kind == 0:
        lines.append(
            f"Weighted agent score {score:+.2f} is inside ±{SCORE_THRESHOLD:.2f}: no clear edge"
        )
    else:
        agreeing = sum(1 for a in active if int(votes[a]) == kind)
        lines.append(
            f"{agreeing} of {len(active)} agents vote {TYPE_NAMES[kind]} "
            f"(weighted score {score:+.2f})"
        )
    return tuple(lines)


def build_signal(
    symbol: str, timeframe: str, bars: Bars, ind: IndicatorFrame, ens: EnsembleArrays, i: int
) -> SignalResult:
    """The Signal at bar i from an ensemble already computed over the same bars."""
    symbol = symbol.upper()
    kind = int(ens.type[i])
    entry = float(bars.close[i])
    atr = atr_at(bars, ind, i)
    if kind == SELL:
        stop, target = entry + STOP_ATR * atr, entry - TARGET_ATR * atr
    else:
        stop, target = entry - STOP_ATR * atr, entry + TARGET_ATR * atr
    epoch = int(bars.time[i])
    agents = tuple(
        AgentVote(
            agent=spec.name,
            vote=VOTE_NAMES[int(ens.votes[a, i])],
            confidence=round(float(ens.confidences[a, i]), 2),
        )
        for a, spec in enumerate(AGENTS)
    )
    return SignalResult(
        id=f"{symbol}-{timeframe}-{epoch}",
        symbol=symbol,
        type=TYPE_NAMES[kind],
        confidence=round(float(ens.confidence[i]), 2),
        entry=round(entry, 4),
        stop_loss=round(stop, 4),
        take_profit=round(target, 4),
        timeframe=timeframe,
        risk=risk_label(atr, entry),
        pattern=pattern_at(bars, ind, kind, i),
        reasoning=_reasoning(bars, ind, ens, i),
        agents=agents,
        indicators=SignalIndicators(
            rsi_14=_optional(float(ind.rsi_14[i]), 2),
            macd_hist=_optional(float(ind.macd_hist[i]), 4),
            trend=trend_at(bars, ind, i),
            volume_ratio=_optional(float(ind.volume_ratio[i]), 2),
        ),
        timestamp=iso_ms(epoch),
    )


def _check(timeframe: str, bars: Bars, ind: IndicatorFrame) -> None:
    if timeframe not in SIGNAL_TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r}: accepted {', '.join(SIGNAL_TIMEFRAMES)}")
    if len(ind) != len(bars):
        raise ValueError(f"{len(ind)} indicator rows for {len(bars)} bars")


def _index(bars: Bars, i: int) -> int:
    n = len(bars)
    if not -n <= i < n:
        raise IndexError(f"bar {i} out of range for {n} bars")
    return i + n if i < 0 else i


def tail(bars: Bars, ind: IndicatorFrame, first: int) -> tuple[Bars, IndicatorFrame, int]:
    """The bars and indicators from AGENT_LOOKBACK bars before `first` on, and the offset of
    bar 0 of that tail: enough for the ensemble and the signal of every bar from `first`."""
    lo = max(first - AGENT_LOOKBACK, 0)
    return bars.take(slice(lo, None)), ind.take(slice(lo, None)), lo


def signal_at(symbol: str, timeframe: str, bars: Bars, ind: IndicatorFrame, i: int) -> SignalResult:
    """The Signal at bar i (negative counts from the end) of `bars` for `symbol`/`timeframe`."""
    _check(timeframe, bars, ind)
    i = _index(bars, i)
    part, part_ind, lo = tail(bars.take(slice(0, i + 1)), ind.take(slice(0, i + 1)), i)
    return build_signal(symbol, timeframe, part, part_ind, ensemble(part, part_ind), i - lo)


def latest_signal(symbol: str, timeframe: str, bars: Bars, ind: IndicatorFrame) -> SignalResult:
    """The Signal on the last bar (what `POST /signals/generate` answers)."""
    return signal_at(symbol, timeframe, bars, ind, -1)


def recent_signals(
    symbol: str, timeframe: str, bars: Bars, ind: IndicatorFrame, count: int = 10
) -> list[SignalResult]:
    """The Signals on the last `count` bars (HOLDs included), newest first."""
    _check(timeframe, bars, ind)
    n = len(bars)
    if count <= 0 or n == 0:
        return []
    first = max(n - count, 0)
    part, part_ind, lo = tail(bars, ind, first)
    ens = ensemble(part, part_ind)
    return [
        build_signal(symbol, timeframe, part, part_ind, ens, i - lo)
        for i in range(n - 1, first - 1, -1)
    ]


def parse_signal_id(signal_id: str) -> tuple[str, str, int] | None:
    """(symbol, timeframe, bar epoch seconds) of a signal id, or None if it is not one.

    Split from the right, since a symbol may itself hold '-' (BRK-B-1d-1700006400).
    """
    parts = signal_id.rsplit("-", 2)
    if len(parts) != 3:
        return None
    symbol, timeframe, epoch = parts[0].upper(), parts[1], parts[2]
    valid = (
        _SYMBOL.fullmatch(symbol) is not None
        and timeframe in SIGNAL_TIMEFRAMES
        and _EPOCH.fullmatch(epoch) is not None
    )
    return (symbol, timeframe, int(epoch)) if valid else None


def rank_signals(signals: Iterable[SignalResult]) -> list[SignalResult]:
    """Signals by confidence descending, ties by symbol, then by id for a total order."""
    return sorted(signals, key=lambda s: (-s.confidence, s.symbol, s.id))


def bar_index(bars: Bars, epoch: int) -> int | None:
    """The index of the bar starting at `epoch` (seconds), None when no bar starts then."""
    p = int(np.searchsorted(bars.time, epoch))
    return p if p < len(bars) and int(bars.time[p]) == epoch else None
