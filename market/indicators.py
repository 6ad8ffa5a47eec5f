"""Technical indicators with TA-Lib's conventions, vectorised in numpy, for signals and the API.

Every function returns float64 arrays as long as its input, NaN until the indicator is defined
(TA-Lib's lookback), and never raises for short input. Running sums replay TA-Lib's own order of
additions, so SMA (and the Bollinger middle band) are TA-Lib's to the last bit; the recursive
filters (EMA, Wilder's smoothing) use a log-step scan that agrees with TA-Lib's loop to ~1e-14
relative; Bollinger deviations are cancellation-free and agree to ~1e-11 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.bars import Bars, FloatArray, IntArray

INDICATOR_NAMES: tuple[str, ...] = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "volume_ratio",
)


def _check_period(name: str, n: int) -> None:
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")


def _as_float(x: FloatArray | IntArray) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _nan(length: int) -> FloatArray:
    return np.full(length, np.nan, dtype=np.float64)


def _first_valid(*arrays: FloatArray) -> int:
    """The index of the first bar where no input is NaN (TA-Lib's wrapper skips leading NaN)."""
    bad = np.zeros(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        bad |= np.isnan(a)
    good = np.flatnonzero(~bad)
    return int(good[0]) if good.size else int(bad.shape[0])


def _sequential_sum(x: FloatArray) -> float:
    """Left-to-right sum, the order TA-Lib's seeding loops add in (np.sum is pairwise)."""
    return float(np.cumsum(x)[-1]) if x.size else 0.0


def _window_sums(x: FloatArray, n: int) -> FloatArray:
    """TA-Lib's running window total at each bar from n-1 on (length len(x)-n+1).

    TA-Lib adds the first n-1 values, then for each bar adds the new value, reads the total and
    subtracts the oldest one. A cumulative sum over that interleaved sequence replays the same
    operations in the same order, so the result is bit-identical and never drifts from TA-Lib.
    """
    count = x.shape[0] - n + 1
    seq = np.empty(n - 1 + 2 * count, dtype=np.float64)
    seq[: n - 1] = x[: n - 1]
    seq[n - 1 :: 2] = x[n - 1 :]
    seq[n::2] = -x[:count]
    return np.cumsum(seq)[n - 1 :: 2]


def _window_deviation(x: FloatArray, n: int) -> FloatArray:
    """Population standard deviation of each n-bar window (length len(x)-n+1).

    Deviations are taken from each window's first value, which is exact for a flat window (so it
    gets exactly 0, as in TA-Lib) and free of the cancellation of mean(x²) - mean(x)²: the shift
    lies inside the window, so mean(d²) <= (n+1) * variance and the error stays ~n ulp relative.
    TA-Lib (0.8) also computes a cancellation-free variance; the two agree to ~1e-12.
    """
    windows = np.lib.stride_tricks.sliding_window_view(x, n)
    d: FloatArray = windows - windows[:, :1]
    mean_d = d.sum(axis=1) / n
    variance: FloatArray = np.square(d).sum(axis=1) / n - mean_d * mean_d
    return np.sqrt(np.maximum(variance, 0.0))


def _first_order(seed: float, inputs: FloatArray, decay: float, gain: float) -> FloatArray:
    """y[0] = seed, y[t] = decay * y[t-1] + gain * inputs[t-1]: EMA and Wilder's smoothing.

    Solved with a log-step (Hillis-Steele) scan: after the pass with step s every y[t] holds the
    exact weighted sum of its last 2s terms, so log2(len) elementwise passes give the whole
    recursion, with rounding error growing only with log2(len) and no machine-dependent BLAS.
    """
    y = np.empty(inputs.shape[0] + 1, dtype=np.float64)
    y[0] = seed
    np.multiply(inputs, gain, out=y[1:])
    step = 1
    factor = decay
    while step < y.shape[0] and factor != 0.0:
        y[step:] += factor * y[:-step]
        factor *= factor
        step *= 2
    return y


def _ema_from(x: FloatArray, n: int, seed_end: int) -> FloatArray:
    """TA-Lib's EMA started at index seed_end: seeded by the mean of the n values ending there."""
    out = _nan(x.shape[0])
    seed = _sequential_sum(x[seed_end - n + 1 : seed_end + 1]) / n
    k = 2.0 / (n + 1)
    out[seed_end:] = _first_order(seed, x[seed_end + 1 :], 1.0 - k, k)
    return out


def sma(x: FloatArray, n: int) -> FloatArray:
    """Simple moving average over n bars; NaN for the first n-1."""
    _check_period("n", n)
    x = _as_float(x)
    out = _nan(x.shape[0])
    start = _first_valid(x)
    if x.shape[0] - start >= n:
        out[start + n - 1 :] = _window_sums(x[start:], n) / n
    return out


def ema(x: FloatArray, n: int) -> FloatArray:
    """Exponential moving average, k = 2/(n+1), seeded by the SMA of the first n values."""
    _check_period("n", n)
    x = _as_float(x)
    out = _nan(x.shape[0])
    start = _first_valid(x)
    if x.shape[0] - start >= n:
        out[start:] = _ema_from(x[start:], n, n - 1)
    return out


def rsi(close: FloatArray, n: int = 14) -> FloatArray:
    """Relative strength index with Wilder's smoothing, seeded by the mean of the first n moves.

    As in TA-Lib, 100 * gain / (gain + loss), and 0 when both are zero (a flat series).
    """
    _check_period("n", n)
    close = _as_float(close)
    out = _nan(close.shape[0])
    start = _first_valid(close)
    c = close[start:]
    if c.shape[0] <= n:
        return out
    move = np.diff(c)
    falling = move < 0
    gains = np.where(falling, 0.0, move)
    losses = np.where(falling, -move, 0.0)
    decay = (n - 1) / n
    avg_gain = _first_order(_sequential_sum(gains[:n]) / n, gains[n:], decay, 1.0 / n)
    avg_loss = _first_order(_sequential_sum(losses[:n]) / n, losses[n:], decay, 1.0 / n)
    total = avg_gain + avg_loss
    value = np.zeros_like(total)
    np.divide(avg_gain, total, out=value, where=total != 0.0)
    out[start + n :] = 100.0 * value
    return out


def atr(high: FloatArray, low: FloatArray, close: FloatArray, n: int = 14) -> FloatArray:
    """Average true range with Wilder's smoothing; bar 0 has no true range (no prior close).

    The first value, at index n, is the mean of the true ranges of bars 1..n, as in TA-Lib.
    """
    _check_period("n", n)
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    out = _nan(close.shape[0])
    start = _first_valid(high, low, close)
    h, lo, c = high[start:], low[start:], close[start:]
    if c.shape[0] <= n:
        return out
    prev = c[:-1]
    true_range = np.maximum(np.maximum(h[1:] - lo[1:], np.abs(prev - h[1:])), np.abs(prev - lo[1:]))
    seed = _sequential_sum(true_range[:n]) / n
    out[start + n :] = _first_order(seed, true_range[n:], (n - 1) / n, 1.0 / n)
    return out


def bbands(
    close: FloatArray, n: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands (upper, middle, lower): SMA(n) plus and minus k population deviations."""
    _check_period("n", n)
    close = _as_float(close)
    upper, middle, lower = _nan(close.shape[0]), _nan(close.shape[0]), _nan(close.shape[0])
    start = _first_valid(close)
    c = close[start:]
    if c.shape[0] < n:
        return upper, middle, lower
    mean = _window_sums(c, n) / n
    deviation = _window_deviation(c, n) * k
    middle[start + n - 1 :] = mean
    upper[start + n - 1 :] = mean + deviation
    lower[start + n - 1 :] = mean - deviation
    return upper, middle, lower


def macd(
    close: FloatArray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, signal line and histogram, exactly as TA-Lib's MACD.

    TA-Lib starts both EMAs at the slow one's first bar: the fast EMA is seeded there by the mean
    of the `fast` values ending at that bar, not from the start of the series. All three outputs
    are NaN until the signal is defined (slow + signal - 2 bars of lookback).
    """
    for name, value in (("fast", fast), ("slow", slow), ("signal", signal)):
        _check_period(name, value)
    if slow < fast:
        fast, slow = slow, fast
    close = _as_float(close)
    line, sig, hist = _nan(close.shape[0]), _nan(close.shape[0]), _nan(close.shape[0])
    start = _first_valid(close)
    c = close[start:]
    lookback = slow - 1 + signal - 1
    if c.shape[0] <= lookback:
        return line, sig, hist
    raw = _ema_from(c, fast, slow - 1) - _ema_from(c, slow, slow - 1)
    signal_line = _ema_from(raw, signal, lookback)
    line[start + lookback :] = raw[lookback:]
    sig[start + lookback :] = signal_line[lookback:]
    hist[start + lookback :] = raw[lookback:] - signal_line[lookback:]
    return line, sig, hist


def volume_ratio(volume: IntArray | FloatArray, n: int = 20) -> FloatArray:
    """Volume over its n-bar SMA; NaN where the SMA is undefined or zero."""
    v = _as_float(volume)
    average = sma(v, n)
    out = _nan(v.shape[0])
    usable = np.isfinite(average) & (average != 0.0)
    np.divide(v, average, out=out, where=usable)
    return out


@dataclass(frozen=True, slots=True)
class IndicatorFrame:
    """Every served indicator, one array per name in INDICATOR_NAMES, aligned with the bars."""

    sma_20: FloatArray
    sma_50: FloatArray
    sma_200: FloatArray
    ema_12: FloatArray
    ema_26: FloatArray
    rsi_14: FloatArray
    macd: FloatArray
    macd_signal: FloatArray
    macd_hist: FloatArray
    bb_upper: FloatArray
    bb_middle: FloatArray
    bb_lower: FloatArray
    atr_14: FloatArray
    volume_ratio: FloatArray

    def __len__(self) -> int:
        return int(self.sma_20.shape[0])

    def take(self, index: slice | IntArray) -> IndicatorFrame:
        """The rows at `index` (a slice or an index array), as a new frame."""
        return IndicatorFrame(**{name: getattr(self, name)[index] for name in INDICATOR_NAMES})

    def row(self, i: int) -> dict[str, float | None]:
        """Row i as name -> value, unrounded, with None where the indicator is undefined."""
        out: dict[str, float | None] = {}
        for name in INDICATOR_NAMES:
            value = float(getattr(self, name)[i])
            out[name] = None if np.isnan(value) else value
        return out

    @staticmethod
    def empty() -> IndicatorFrame:
        return IndicatorFrame(**{name: np.empty(0, dtype=np.float64) for name in INDICATOR_NAMES})


def round_row(row: dict[str, float | None], ndigits: int = 4) -> dict[str, float | None]:
    """A row with its values rounded for the wire (None stays None)."""
    return {k: None if v is None else round(v, ndigits) for k, v in row.items()}


def compute_indicators(bars: Bars) -> IndicatorFrame:
    """All indicators over the whole series of bars (callers slice the window they serve)."""
    close = bars.close
    macd_line, macd_signal, macd_hist = macd(close, 12, 26, 9)
    bb_upper, bb_middle, bb_lower = bbands(close, 20, 2.0)
    return IndicatorFrame(
        sma_20=sma(close, 20),
        sma_50=sma(close, 50),
        sma_200=sma(close, 200),
        ema_12=ema(close, 12),
        ema_26=ema(close, 26),
        rsi_14=rsi(close, 14),
        macd=macd_line,
        macd_signal=macd_signal,
        macd_hist=macd_hist,
        bb_upper=bb_upper,
        bb_middle=bb_middle,
        bb_lower=bb_lower,
        atr_14=atr(bars.high, bars.low, close, 14),
        volume_ratio=volume_ratio(bars.volume, 20),
    )
