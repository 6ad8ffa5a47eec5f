"""Options signals: a CALL or PUT setup derived from each recent BUY or SELL Signal.

Premiums are Black-Scholes prices with a volatility implied by the ATR, so an options signal is
pure arithmetic on the bars: the same bars give the same strikes, dates and premiums anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from market.bars import Bars
from market.indicators import IndicatorFrame
from market.signals import (
    BARS_PER_YEAR,
    PATTERN_TITLES,
    SIGNAL_TIMEFRAMES,
    SignalResult,
    atr_at,
    build_signal,
    ensemble,
    tail,
)

# How far back (in bars) a BUY/SELL still gives an options setup.
LOOKBACK_BARS = 50
RISK_FREE_RATE = 0.04
# Expected range of a Brownian day is sqrt(8/pi) ~ 1.6 daily sigmas: ATR / 1.6 estimates sigma.
ATR_TO_SIGMA = 1.6
MIN_VOL, MAX_VOL = 0.05, 2.5
# Calendar days from the bar to the earliest acceptable expiration, per signal timeframe.
MIN_EXPIRY_DAYS = {"5m": 7, "15m": 7, "30m": 7, "1h": 10, "4h": 14, "1d": 30}
HOLD_DURATION = {
    "5m": "1-3 hours",
    "15m": "2-6 hours",
    "30m": "4-12 hours",
    "1h": "1-2 days",
    "4h": "2-5 days",
    "1d": "1-3 weeks",
}
# The expected holding time in calendar days, used to age the option when valuing exits.
HOLD_DAYS = {"5m": 0.1, "15m": 0.2, "30m": 0.4, "1h": 1.5, "4h": 3.5, "1d": 10.0}
# Exits at 0.5x, 1x and 1.5x the signal's move to its take profit, selling 50/30/20 %.
TARGET_STEPS = ((0.5, 50), (1.0, 30), (1.5, 20))
FRIDAY = 4


@dataclass(frozen=True, slots=True)
class OptionTarget:
    """A premium at which to sell `exit_pct` percent of the position."""

    price: float
    exit_pct: int


@dataclass(frozen=True, slots=True)
class OptionsSignalResult:
    """An OptionsSignal with exactly the wire fields of the contract."""

    id: str
    signal_id: str
    symbol: str
    type: str
    confidence: float
    priority: str
    strike_price: float
    expiration_date: str
    entry_price: float
    entry_zone: tuple[float, float]
    stop_loss: float
    targets: tuple[OptionTarget, ...]
    risk_reward_ratio: float
    hold_duration: str
    setup_name: str
    key_indicators: dict[str, float | str]
    exit_rules: tuple[str, ...]
    timestamp: str


def priority_of(confidence: float) -> str:
    """HIGH from 75, MEDIUM from 60, else LOW."""
    if confidence >= 75:
        return "HIGH"
    if confidence >= 60:
        return "MEDIUM"
    return "LOW"


def strike_increment(price: float) -> float:
    """Listed strike spacing by price: 0.5 under 25, 1 under 200, 5 above."""
    if price < 25:
        return 0.5
    if price < 200:
        return 1.0
    return 5.0


def strike_for(kind: str, price: float) -> float:
    """A slightly out-of-the-money strike: the first listed one beyond 1 % from the price."""
    step = strike_increment(price)
    # Rounding the quotient first keeps 101.0 / 1.0 from becoming 101.00000000000001.
    if kind == "CALL":
        return math.ceil(round(price * 1.01 / step, 9)) * step
    return max(math.floor(round(price * 0.99 / step, 9)) * step, step)


def expiration_for(bar_time: int, timeframe: str) -> date:
    """The first Friday at least MIN_EXPIRY_DAYS[timeframe] calendar days after the bar's date."""
    bar_date = datetime.fromtimestamp(bar_time, tz=UTC).date()
    earliest = bar_date + timedelta(days=MIN_EXPIRY_DAYS[timeframe])
    return earliest + timedelta(days=(FRIDAY - earliest.weekday()) % 7)


def implied_volatility(atr: float, price: float, timeframe: str) -> float:
    """Annualised volatility implied by ATR per bar, clamped to a believable range."""
    per_bar = atr / ATR_TO_SIGMA / price if price > 0 else MAX_VOL
    return min(max(per_bar * math.sqrt(BARS_PER_YEAR[timeframe]), MIN_VOL), MAX_VOL)


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(kind: str, spot: float, strike: float, years: float, vol: float) -> float:
    """European option price (no dividends, RISK_FREE_RATE); intrinsic value at expiry."""
    if years <= 0 or vol <= 0 or spot <= 0:
        return max(spot - strike, 0.0) if kind == "CALL" else max(strike - spot, 0.0)
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (RISK_FREE_RATE + 0.5 * vol * vol) * years) / root
    d2 = d1 - root
    discount = strike * math.exp(-RISK_FREE_RATE * years)
    if kind == "CALL":
        return spot * _norm_cdf(d1) - discount * _norm_cdf(d2)
    return discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def _delta(kind: str, spot: float, strike: float, years: float, vol: float) -> float:
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (RISK_FREE_RATE + 0.5 * vol * vol) * years) / root
    return _norm_cdf(d1) if kind == "CALL" else _norm_cdf(d1) - 1.0


def options_from_signal(
    signal: SignalResult, bars: Bars, ind: IndicatorFrame, i: int
) -> OptionsSignalResult:
    """The CALL (from a BUY) or PUT (from a SELL) setup for `signal`, the Signal at bar i."""
    kind = "PUT" if signal.type == "SELL" else "CALL"
    timeframe = signal.timeframe
    spot = float(bars.close[i])
    atr = atr_at(bars, ind, i)
    vol = implied_volatility(atr, spot, timeframe)
    strike = strike_for(kind, spot)
    expiry = expiration_for(int(bars.time[i]), timeframe)
    bar_date = datetime.fromtimestamp(int(bars.time[i]), tz=UTC).date()
    years = (expiry - bar_date).days / 365.0
    aged = max(years - HOLD_DAYS[timeframe] / 365.0, 1.0 / 365.0)

    entry = max(round(black_scholes(kind, spot, strike, years, vol), 2), 0.01)
    # The premium if the underlying hits the signal's stop, but never risking under 20 %.
    at_stop = black_scholes(kind, signal.stop_loss, strike, aged, vol)
    stop = max(round(min(at_stop, entry * 0.8), 2), 0.01)
    move = signal.take_profit - signal.entry
    targets: list[OptionTarget] = []
    floor = entry
    for k, (fraction, exit_pct) in enumerate(TARGET_STEPS, start=1):
        value = black_scholes(kind, signal.entry + fraction * move, strike, aged, vol)
        # Time decay can eat a small move; a target must still be a gain over the last one.
        price = round(max(value, entry * (1.0 + 0.2 * k), floor + 0.01), 2)
        targets.append(OptionTarget(price=price, exit_pct=exit_pct))
        floor = price
    expected_exit = sum(t.price * t.exit_pct for t in targets) / 100.0
    risk_reward = round((expected_exit - entry) / (entry - stop), 2) if entry > stop else 0.0

    indicators: dict[str, float | str] = {
        "underlying_price": round(spot, 4),
        "implied_volatility": round(vol, 4),
        "delta": round(_delta(kind, spot, strike, years, vol), 2),
        "atr_14": round(atr, 4),
        "trend": signal.indicators.trend,
        "pattern": signal.pattern,
    }
    shown = signal.indicators
    optional = {
        "rsi_14": shown.rsi_14,
        "macd_hist": shown.macd_hist,
        "volume_ratio": shown.volume_ratio,
    }
    indicators.update({name: v for name, v in optional.items() if v is not None})

    side = "below" if kind == "CALL" else "above"
    exit_rules = (
        f"Exit everything if {signal.symbol} closes {side} {signal.stop_loss:.2f} "
        f"or the option falls to {stop:.2f}",
        *(f"Sell {t.exit_pct}% at {t.price:.2f}" for t in targets),
        f"Close any remainder after {HOLD_DURATION[timeframe]} or two trading days "
        f"before expiration ({expiry.isoformat()})",
        f"Exit if the {timeframe} signal turns {'SELL' if kind == 'CALL' else 'BUY'}",
    )
    return OptionsSignalResult(
        id=f"{signal.id}-{kind}",
        signal_id=signal.id,
        symbol=signal.symbol,
        type=kind,
        confidence=signal.confidence,
        priority=priority_of(signal.confidence),
        strike_price=round(strike, 4),
        expiration_date=expiry.isoformat(),
        entry_price=entry,
        entry_zone=(round(entry * 0.97, 2), round(entry * 1.03, 2)),
        stop_loss=stop,
        targets=tuple(targets),
        risk_reward_ratio=risk_reward,
        hold_duration=HOLD_DURATION[timeframe],
        setup_name=f"{PATTERN_TITLES[signal.pattern]} {kind.title()}",
        key_indicators=indicators,
        exit_rules=exit_rules,
        timestamp=signal.timestamp,
    )


def options_signals(
    symbol: str, timeframe: str, bars: Bars, ind: IndicatorFrame, count: int = 3
) -> list[OptionsSignalResult]:
    """Options setups from the newest BUY/SELL Signals of the last 50 bars, newest first.

    At most `count`; BUY gives a CALL, SELL a PUT; HOLD bars give nothing.
    """
    if timeframe not in SIGNAL_TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r}: accepted {', '.join(SIGNAL_TIMEFRAMES)}")
    n = len(bars)
    if count <= 0 or n == 0:
        return []
    first = max(n - LOOKBACK_BARS, 0)
    part, part_ind, lo = tail(bars, ind, first)
    ens = ensemble(part, part_ind)
    out: list[OptionsSignalResult] = []
    for i in range(n - 1, first - 1, -1):
        if ens.type[i - lo] == 0:
            continue
        signal = build_signal(symbol, timeframe, part, part_ind, ens, i - lo)
        out.append(options_from_signal(signal, bars, ind, i))
        if len(out) == count:
            break
    return out
