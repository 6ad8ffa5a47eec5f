"""Market opportunities: the strongest daily BUY/SELL signals across the universe, scored."""

from __future__ import annotations

from dataclasses import dataclass

from market.bars import Bars
from market.indicators import IndicatorFrame
from market.insights import annualised_volatility
from market.signals import BARS_PER_YEAR, PATTERN_TITLES, SignalResult, bar_index, parse_signal_id

MOMENTUM_BARS = 20
MOMENTUM_POINTS = {"strong": 20.0, "moderate": 12.0, "building": 5.0}


@dataclass(frozen=True, slots=True)
class OpportunityInput:
    """One symbol as the opportunities scan reads it: its daily bars and latest 1d Signal."""

    symbol: str
    name: str
    sector: str
    bars: Bars
    ind: IndicatorFrame
    signal: SignalResult


@dataclass(frozen=True, slots=True)
class OpportunityResult:
    """An opportunity with exactly the wire fields of the contract."""

    id: str
    symbol: str
    name: str
    type: str
    confidence: float
    potential_return: float
    timeframe: str
    key_reason: str
    momentum: str
    ai_score: int
    sector: str
    volume: int
    volatility: float
    current_price: float


def _signal_bar(candidate: OpportunityInput) -> int:
    """The signal's own bar, else the last one."""
    parsed = parse_signal_id(candidate.signal.id)
    found = bar_index(candidate.bars, parsed[2]) if parsed else None
    return len(candidate.bars) - 1 if found is None else found


def momentum_of(bars: Bars, i: int, direction: int, trend: str) -> str:
    """strong: 5 %+ over 20 bars in the signal's direction with the trend agreeing;
    moderate: 1.5 %+; building: anything less (the move has yet to show in the price)."""
    base = float(bars.close[max(i - MOMENTUM_BARS, 0)])
    change = (float(bars.close[i]) / base - 1.0) * 100.0 * direction if base > 0 else 0.0
    along = trend == ("up" if direction > 0 else "down")
    if change >= 5.0 and along:
        return "strong"
    if change >= 1.5:
        return "moderate"
    return "building"


def ai_score(confidence: float, potential_return: float, momentum: str) -> int:
    """0.6 x confidence + up to 20 for a 10 % potential return + 5/12/20 for the momentum."""
    raw = (
        0.6 * confidence
        + 20.0 * min(max(potential_return, 0.0) / 10.0, 1.0)
        + MOMENTUM_POINTS[momentum]
    )
    return round(min(max(raw, 0.0), 100.0))


def _opportunity(candidate: OpportunityInput) -> OpportunityResult:
    signal = candidate.signal
    i = _signal_bar(candidate)
    direction = 1 if signal.type == "BUY" else -1
    price = float(candidate.bars.close[i])
    potential = (
        (signal.take_profit - signal.entry) / signal.entry * 100.0 * direction
        if signal.entry > 0
        else 0.0
    )
    momentum = momentum_of(candidate.bars, i, direction, signal.indicators.trend)
    reason = signal.reasoning[0] if signal.reasoning else signal.pattern
    return OpportunityResult(
        id=f"opp-{signal.id}",
        symbol=signal.symbol,
        name=candidate.name,
        type="CALL" if direction > 0 else "PUT",
        confidence=signal.confidence,
        potential_return=round(potential, 2),
        timeframe=signal.timeframe,
        key_reason=f"{PATTERN_TITLES.get(signal.pattern, signal.pattern)}: {reason}",
        momentum=momentum,
        ai_score=ai_score(signal.confidence, potential, momentum),
        sector=candidate.sector,
        volume=int(candidate.bars.volume[i]),
        volatility=round(
            annualised_volatility(candidate.bars.close, i, BARS_PER_YEAR[signal.timeframe]), 4
        ),
        current_price=round(price, 4),
    )


def opportunities(candidates: list[OpportunityInput], limit: int) -> list[OpportunityResult]:
    """The BUY/SELL candidates as opportunities, by ai_score descending then symbol, at most
    `limit`. HOLD signals are no opportunity and are left out."""
    if limit <= 0:
        return []
    found = [
        _opportunity(c) for c in candidates if c.signal.type in ("BUY", "SELL") and len(c.bars) > 0
    ]
    found.sort(key=lambda o: (-o.ai_score, o.symbol, o.id))
    return found[:limit]
