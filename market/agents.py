"""The signal agents: small technical voters the ensemble and the agents page are built from.

Each agent reads the bars and their indicators and votes on every bar at once (vectorised):
1 BUY, -1 SELL, 0 HOLD, with a confidence 0-100. A bar whose indicator is not yet defined
gets vote 0 with confidence 0, which the ensemble reads as "no opinion".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from market.bars import Bars, FloatArray
from market.indicators import IndicatorFrame

Int8Array = NDArray[np.int8]
BoolArray = NDArray[np.bool_]

BUY = 1
SELL = -1
HOLD = 0
VOTE_NAMES = {BUY: "BUY", SELL: "SELL", HOLD: "HOLD"}

RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0
# The spread of SMA 20 over SMA 50 (a fraction) under which the averages say nothing.
MA_FLAT_SPREAD = 0.002
VOLUME_SPIKE = 1.5
# No agent reads further back than this many bars (the trend agent's 5-bar slope, with room to
# spare), so the votes on the last k bars of a series equal those computed on only its last
# k + AGENT_LOOKBACK bars: callers that need a few bars vote on a short tail.
AGENT_LOOKBACK = 8


@dataclass(frozen=True, slots=True)
class AgentVotes:
    """One agent's votes for every bar: `vote` in {-1, 0, 1}, `confidence` 0-100."""

    vote: Int8Array
    confidence: FloatArray


AgentFunction = Callable[[Bars, IndicatorFrame], AgentVotes]
AgentExplainer = Callable[[Bars, IndicatorFrame, int], str]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent as the API lists it, with its vectorised vote function and its explainer.

    `explain(bars, ind, i)` says in one sentence what the agent saw at bar i (for the
    signal's reasoning); it is only called on bars where the agent's indicator is defined.
    """

    name: str
    type: str
    description: str
    function: AgentFunction
    explain: AgentExplainer


def _prev(values: FloatArray, lag: int = 1) -> FloatArray:
    """`values` shifted right by `lag` bars, NaN where there is no earlier bar."""
    out = np.full_like(values, np.nan)
    if lag < values.shape[0]:
        out[lag:] = values[:-lag]
    return out


def _votes(buy: BoolArray, sell: BoolArray, defined: BoolArray, conf: FloatArray) -> AgentVotes:
    vote = np.where(buy & defined, BUY, np.where(sell & defined, SELL, HOLD)).astype(np.int8)
    confidence = np.where(defined, np.clip(np.nan_to_num(conf), 0.0, 100.0), 0.0)
    return AgentVotes(vote=vote, confidence=confidence.astype(np.float64))


def _ramp(x: FloatArray, full: float) -> FloatArray:
    """0 at x = 0 rising linearly to 1 at x = full, flat after (NaN counts as 0)."""
    return np.clip(np.nan_to_num(x) / full, 0.0, 1.0)


def rsi_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """RSI(14) below 30 is oversold (BUY), above 70 overbought (SELL); stronger when turning."""
    r = ind.rsi_14
    prev = _prev(r)
    defined = np.isfinite(r)
    buy = r < RSI_OVERSOLD
    sell = r > RSI_OVERBOUGHT
    # Turning back from the extreme is the classic confirmation of a reversal.
    turning_up = np.where(r > prev, 10.0, 0.0)
    turning_down = np.where(r < prev, 10.0, 0.0)
    conf = np.where(
        buy,
        np.minimum(55.0 + (RSI_OVERSOLD - r) * 1.5, 90.0) + turning_up,
        np.where(
            sell,
            np.minimum(55.0 + (r - RSI_OVERBOUGHT) * 1.5, 90.0) + turning_down,
            60.0 - np.abs(r - 50.0) * 1.5,
        ),
    )
    return _votes(buy, sell, defined, conf)


def _rsi_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    r = float(ind.rsi_14[i])
    if r < RSI_OVERSOLD:
        return f"RSI(14) at {r:.1f} is oversold (below 30)"
    if r > RSI_OVERBOUGHT:
        return f"RSI(14) at {r:.1f} is overbought (above 70)"
    return f"RSI(14) at {r:.1f} is neutral (between 30 and 70)"


def _macd_scale(bars: Bars, ind: IndicatorFrame) -> FloatArray:
    """What a MACD histogram is measured against: ATR(14), else 2 % of the close."""
    return np.where(np.isfinite(ind.atr_14) & (ind.atr_14 > 0), ind.atr_14, bars.close * 0.02)


def macd_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """The MACD histogram's sign, strongest on a crossover and when the histogram grows."""
    h = ind.macd_hist
    prev = _prev(h)
    defined = np.isfinite(h)
    strength = _ramp(np.abs(h) / _macd_scale(bars, ind), 0.25)
    cross_up = (h > 0) & (prev <= 0)
    cross_down = (h < 0) & (prev >= 0)
    growing = np.where(np.abs(h) > np.abs(prev), 10.0, 0.0)
    conf = np.where(
        cross_up | cross_down,
        75.0 + 15.0 * _ramp(np.abs(h) / _macd_scale(bars, ind), 0.1),
        np.where(h != 0, 45.0 + 30.0 * strength + growing, 30.0),
    )
    return _votes(h > 0, h < 0, defined, conf)


def _macd_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    h = float(ind.macd_hist[i])
    prev = float(ind.macd_hist[i - 1]) if i > 0 else float("nan")
    if h > 0 and prev <= 0:
        return f"MACD crossed above its signal line (histogram {h:+.4f})"
    if h < 0 and prev >= 0:
        return f"MACD crossed below its signal line (histogram {h:+.4f})"
    side = "positive" if h > 0 else "negative" if h < 0 else "flat"
    if not np.isfinite(prev):
        return f"MACD histogram is {side} ({h:+.4f})"
    direction = "widening" if abs(h) > abs(prev) else "narrowing"
    return f"MACD histogram is {side} ({h:+.4f}) and {direction}"


def ma_crossover_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """SMA 20 against SMA 50: golden/death crosses, then the trend they describe."""
    fast, slow = ind.sma_20, ind.sma_50
    defined = np.isfinite(fast) & np.isfinite(slow)
    spread = np.where(defined, (fast - slow) / np.where(slow != 0, slow, 1.0), 0.0)
    golden, death = ma_crosses(ind)
    # A close on the wrong side of the fast average weakens the trend reading.
    against = np.where(
        ((spread > 0) & (bars.close < fast)) | ((spread < 0) & (bars.close > fast)), 10.0, 0.0
    )
    conf = np.where(
        golden | death,
        85.0,
        np.where(
            np.abs(spread) > MA_FLAT_SPREAD,
            50.0 + 35.0 * _ramp(np.abs(spread), 0.05) - against,
            40.0,
        ),
    )
    buy = golden | ((spread > MA_FLAT_SPREAD) & ~death)
    sell = death | ((spread < -MA_FLAT_SPREAD) & ~golden)
    return _votes(buy, sell, defined, conf)


def ma_crosses(ind: IndicatorFrame) -> tuple[BoolArray, BoolArray]:
    """(golden, death): bars where SMA 20 crosses above / below SMA 50."""
    fast, slow = ind.sma_20, ind.sma_50
    fast_prev, slow_prev = _prev(fast), _prev(slow)
    golden = (fast > slow) & (fast_prev <= slow_prev)
    death = (fast < slow) & (fast_prev >= slow_prev)
    return golden, death


def _ma_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    fast, slow = float(ind.sma_20[i]), float(ind.sma_50[i])
    if i > 0:
        fast_prev, slow_prev = float(ind.sma_20[i - 1]), float(ind.sma_50[i - 1])
        if fast > slow and fast_prev <= slow_prev:
            return "SMA 20 crossed above SMA 50 (golden cross)"
        if fast < slow and fast_prev >= slow_prev:
            return "SMA 20 crossed below SMA 50 (death cross)"
    spread = (fast / slow - 1.0) * 100.0
    side = "above" if spread >= 0 else "below"
    return f"SMA 20 is {abs(spread):.2f}% {side} SMA 50"


def bollinger_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """Bollinger 20/2 mean reversion: a close under the lower band buys, over the upper sells."""
    upper, lower = ind.bb_upper, ind.bb_lower
    width = upper - lower
    defined = np.isfinite(upper) & np.isfinite(lower) & (width > 0)
    safe_width = np.where(defined, width, 1.0)
    pos = np.where(defined, (bars.close - lower) / safe_width, 0.5)
    below = pos < 0.0
    above = pos > 1.0
    near_low = (pos >= 0.0) & (pos < 0.1)
    near_high = (pos <= 1.0) & (pos > 0.9)
    conf = np.where(
        below,
        60.0 + 30.0 * _ramp(-pos, 0.2),
        np.where(
            above,
            60.0 + 30.0 * _ramp(pos - 1.0, 0.2),
            np.where(
                near_low,
                45.0 + (0.1 - pos) * 150.0,
                np.where(near_high, 45.0 + (pos - 0.9) * 150.0, 50.0 - np.abs(pos - 0.5) * 40.0),
            ),
        ),
    )
    return _votes(below | near_low, above | near_high, defined, conf)


def _bollinger_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    close = float(bars.close[i])
    upper, lower = float(ind.bb_upper[i]), float(ind.bb_lower[i])
    if close < lower:
        return f"Close {close:.2f} is below the lower Bollinger band ({lower:.2f})"
    if close > upper:
        return f"Close {close:.2f} is above the upper Bollinger band ({upper:.2f})"
    pos = (close - lower) / (upper - lower) * 100.0 if upper > lower else 50.0
    return f"Close sits at {pos:.0f}% of the Bollinger band ({lower:.2f}-{upper:.2f})"


def _bar_direction(bars: Bars) -> NDArray[np.float64]:
    """+1 for an up bar, -1 for a down bar: the body, else the change from the previous close."""
    body = np.sign(bars.close - bars.open)
    change = np.sign(bars.close - _prev(bars.close))
    return np.where(body != 0, body, np.nan_to_num(change))


def volume_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """A volume spike (1.5x the 20-bar average or more) confirms the bar's direction."""
    ratio = ind.volume_ratio
    defined = np.isfinite(ratio)
    direction = _bar_direction(bars)
    spike = ratio >= VOLUME_SPIKE
    conf = np.where(
        spike & (direction != 0),
        50.0 + 35.0 * _ramp(ratio - VOLUME_SPIKE, 1.5),
        np.clip(40.0 - 10.0 * np.abs(np.nan_to_num(ratio) - 1.0), 20.0, 40.0),
    )
    return _votes(spike & (direction > 0), spike & (direction < 0), defined, conf)


def _volume_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    ratio = float(ind.volume_ratio[i])
    if ratio >= VOLUME_SPIKE:
        d = _bar_direction(bars.take(slice(max(i - 1, 0), i + 1)))[-1]
        kind = "an up" if d > 0 else "a down" if d < 0 else "a flat"
        return f"Volume at {ratio:.1f}x its 20-bar average on {kind} bar"
    return f"Volume at {ratio:.1f}x its 20-bar average, no spike"


def trend_agent(bars: Bars, ind: IndicatorFrame) -> AgentVotes:
    """The long trend: close against SMA 200 with the slope of SMA 50 over 5 bars."""
    long_avg, mid = ind.sma_200, ind.sma_50
    mid_before = _prev(mid, 5)
    defined = np.isfinite(long_avg) & np.isfinite(mid) & np.isfinite(mid_before) & (long_avg > 0)
    safe_long = np.where(defined, long_avg, 1.0)
    distance = bars.close / safe_long - 1.0
    up = (distance > 0) & (mid > mid_before)
    down = (distance < 0) & (mid < mid_before)
    conf = np.where(up | down, 50.0 + 30.0 * _ramp(np.abs(distance), 0.15), 35.0)
    return _votes(up, down, defined, conf)


def _trend_explain(bars: Bars, ind: IndicatorFrame, i: int) -> str:
    distance = (float(bars.close[i]) / float(ind.sma_200[i]) - 1.0) * 100.0
    slope = "rising" if i >= 5 and ind.sma_50[i] > ind.sma_50[i - 5] else "falling or flat"
    side = "above" if distance >= 0 else "below"
    return f"Close is {abs(distance):.2f}% {side} SMA 200 with SMA 50 {slope}"


AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec(
        name="rsi",
        type="technical",
        description="RSI(14) mean reversion: oversold under 30 buys, overbought over 70 sells.",
        function=rsi_agent,
        explain=_rsi_explain,
    ),
    AgentSpec(
        name="macd",
        type="technical",
        description="MACD 12/26/9 momentum: histogram sign, strongest on signal-line crossovers.",
        function=macd_agent,
        explain=_macd_explain,
    ),
    AgentSpec(
        name="ma_crossover",
        type="technical",
        description="SMA 20 against SMA 50: golden and death crosses and the trend between them.",
        function=ma_crossover_agent,
        explain=_ma_explain,
    ),
    AgentSpec(
        name="bollinger",
        type="technical",
        description="Bollinger 20/2 mean reversion: closes outside or near the bands.",
        function=bollinger_agent,
        explain=_bollinger_explain,
    ),
    AgentSpec(
        name="volume",
        type="technical",
        description="Volume spikes (1.5x the 20-bar average) confirming the bar's direction.",
        function=volume_agent,
        explain=_volume_explain,
    ),
    AgentSpec(
        name="trend",
        type="technical",
        description="Long trend: close against SMA 200 with the 5-bar slope of SMA 50.",
        function=trend_agent,
        explain=_trend_explain,
    ),
)


def agent_votes(bars: Bars, ind: IndicatorFrame) -> tuple[Int8Array, FloatArray]:
    """Every agent's votes stacked: (votes, confidences), each shaped (len(AGENTS), len(bars))."""
    results = [spec.function(bars, ind) for spec in AGENTS]
    votes = np.stack([r.vote for r in results]).astype(np.int8)
    confs = np.stack([r.confidence for r in results]).astype(np.float64)
    return votes, confs
