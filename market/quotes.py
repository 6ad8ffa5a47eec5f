"""The Quote of a symbol: its last daily bars plus a live price, the same in both backends."""

from __future__ import annotations

from dataclasses import dataclass

from market.bars import Bars
from market.calendar import iso_ms


@dataclass(frozen=True, slots=True)
class QuoteResult:
    """A Quote with exactly the wire fields (prices rounded to 4 decimals)."""

    symbol: str
    price: float
    change: float
    change_percent: float
    volume: int
    open: float
    high: float
    low: float
    previous_close: float
    bid: float
    ask: float
    timestamp: str


def build_quote(symbol: str, daily: Bars, price: float | None, at: float) -> QuoteResult:
    """The Quote for `symbol` from its daily bars and a live price (None: the last close).

    open and volume are the last daily bar's; high and low stretch to include the price;
    change is against the close of the bar before the last; bid/ask sit half a spread
    (0.02 % of the price, at least 0.01) either side. `at` (epoch seconds) stamps the quote.
    """
    if len(daily) < 2:
        raise ValueError(f"a quote needs at least 2 daily bars, {symbol} has {len(daily)}")
    last_close = float(daily.close[-1])
    current = round(last_close if price is None else float(price), 4)
    previous_close = round(float(daily.close[-2]), 4)
    change = round(current - previous_close, 4)
    change_percent = round(change / previous_close * 100.0, 4) if previous_close else 0.0
    spread = round(max(0.01, current * 0.0002), 4)
    return QuoteResult(
        symbol=symbol,
        price=current,
        change=change,
        change_percent=change_percent,
        volume=int(daily.volume[-1]),
        open=round(float(daily.open[-1]), 4),
        high=round(max(float(daily.high[-1]), current), 4),
        low=round(min(float(daily.low[-1]), current), 4),
        previous_close=previous_close,
        bid=round(current - spread / 2, 4),
        ask=round(current + spread / 2, 4),
        timestamp=iso_ms(at),
    )
