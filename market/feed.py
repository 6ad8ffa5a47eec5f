"""The simulated live quote feed: a pure function of (seed, symbol, last close, second).

The mock and the production feed both call `live_price`, so two processes show the same price
for the same symbol in the same second without talking to each other.
"""

from __future__ import annotations

import math

from market.history import symbol_key

TICK_SECONDS = 1.0
# How far the live price may stray from the last close, as a fraction of it.
MAX_DEVIATION = 0.015

_MASK = (1 << 64) - 1
# Value noise at these scales (in ticks), each weighted by the square root of its scale so the
# sum moves like a random walk: small tick-to-tick steps, larger swings over minutes.
_SCALES = (1, 4, 16, 64, 256, 1024)
_WEIGHTS = tuple(math.sqrt(s) for s in _SCALES)
_WEIGHT_SUM = sum(_WEIGHTS)


def _splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _lattice(base: int, scale: int, index: int) -> float:
    """A value in [-1, 1) fixed by (base, scale, index)."""
    mixed = _splitmix64(base ^ _splitmix64((scale << 40) ^ (index & _MASK)))
    return (mixed >> 11) / float(1 << 52) - 1.0


def live_price(seed: int, symbol: str, last_close: float, at: float) -> float:
    """The live price at epoch time `at`: within ±1.5 % of `last_close`, rounded to 4 decimals.

    Depends only on (seed, symbol, last_close, floor(at / TICK_SECONDS)).
    """
    tick = math.floor(at / TICK_SECONDS)
    base = _splitmix64((seed & _MASK) ^ _splitmix64(symbol_key(symbol)))
    total = 0.0
    for scale, weight in zip(_SCALES, _WEIGHTS, strict=True):
        index, step = divmod(tick, scale)
        frac = step / scale
        smooth = frac * frac * (3.0 - 2.0 * frac)
        left = _lattice(base, scale, index)
        right = _lattice(base, scale, index + 1)
        total += weight * (left + (right - left) * smooth)
    deviation = MAX_DEVIATION * total / _WEIGHT_SUM
    return round(max(last_close * (1.0 + deviation), 0.0001), 4)
