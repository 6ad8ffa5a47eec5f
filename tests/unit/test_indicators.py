"""Indicators against TA-Lib itself: same values (1e-9), same undefined bars, on awkward series."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import talib

from market.bars import Bars, FloatArray, IntArray
from market.indicators import (
    INDICATOR_NAMES,
    IndicatorFrame,
    atr,
    bbands,
    compute_indicators,
    ema,
    macd,
    round_row,
    rsi,
    sma,
    volume_ratio,
)

RTOL = ATOL = 1e-9


def assert_same(mine: FloatArray, reference: FloatArray) -> None:
    """Same length, float64, NaN exactly where TA-Lib has NaN, values within 1e-9."""
    assert mine.dtype == np.float64
    assert mine.shape == reference.shape
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(reference))
    np.testing.assert_allclose(mine, reference, equal_nan=True, rtol=RTOL, atol=ATOL)


class Series:
    """One OHLCV test series (high >= close >= low, volumes non-negative integers)."""

    def __init__(self, close: FloatArray, spread: FloatArray, volume: IntArray) -> None:
        self.close = close
        self.high = close + spread
        self.low = close - spread * 0.7
        self.volume = volume


def random_walk(length: int, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    close = 300.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, length)))
    spread = close * rng.uniform(0.0, 0.02, length)
    volume = rng.integers(100_000, 5_000_000, length)
    return Series(close, spread, volume)


def bounded_walk(length: int, seed: int) -> Series:
    """Prices kept within 100-600, the range of the served universe."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    close = 350.0 + 200.0 * np.sin(t / 400.0) + np.cumsum(rng.normal(0.0, 1.0, length)) / 10.0
    close = np.clip(close, 100.0, 600.0)
    return Series(close, rng.uniform(0.0, 5.0, length), rng.integers(0, 10**7, length))


def with_jumps(length: int, seed: int) -> Series:
    """Spikes: single bars 20-60 % away from their neighbours, then back."""
    s = random_walk(length, seed)
    rng = np.random.default_rng(seed + 1)
    spikes = rng.choice(length, size=length // 50, replace=False)
    close = s.close.copy()
    close[spikes] *= rng.choice([0.4, 0.6, 1.3, 1.6], size=spikes.size)
    return Series(close, s.high - s.close, s.volume)


def with_gaps(length: int, seed: int) -> Series:
    """Level shifts: the price gaps by up to x3 / x0.3 and stays there (high/low clear the gap)."""
    s = random_walk(length, seed)
    rng = np.random.default_rng(seed + 2)
    factor = np.ones(length)
    gaps = rng.choice(np.arange(1, length), size=max(1, length // 200), replace=False)
    factor[gaps] = rng.choice([0.3, 0.5, 2.0, 3.0], size=gaps.size)
    close = s.close * np.cumprod(factor)
    return Series(close, close * 0.005, s.volume)


SERIES: dict[str, Series] = {
    "random_walk_6000": random_walk(6000, 7),
    "bounded_100_600": bounded_walk(6000, 11),
    "jumps": with_jumps(3000, 3),
    "gaps": with_gaps(3000, 5),
}
SERIES_IDS = list(SERIES)


@pytest.fixture(params=SERIES_IDS)
def series(request: pytest.FixtureRequest) -> Series:
    return SERIES[request.param]


@pytest.mark.parametrize("n", [1, 2, 5, 20, 50, 200])
def test_sma_matches_talib(series: Series, n: int) -> None:
    assert_same(sma(series.close, n), talib.SMA(series.close, n))


@pytest.mark.parametrize("n", [1, 2, 12, 26, 200])
def test_ema_matches_talib(series: Series, n: int) -> None:
    assert_same(ema(series.close, n), talib.EMA(series.close, n))


@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_talib(series: Series, n: int) -> None:
    assert_same(rsi(series.close, n), talib.RSI(series.close, n))


@pytest.mark.parametrize("n", [1, 2, 14, 50])
def test_atr_matches_talib(series: Series, n: int) -> None:
    assert_same(
        atr(series.high, series.low, series.close, n),
        talib.ATR(series.high, series.low, series.close, n),
    )


@pytest.mark.parametrize(("n", "k"), [(20, 2.0), (5, 1.0), (10, 2.5)])
def test_bbands_matches_talib(series: Series, n: int, k: float) -> None:
    for mine, ref in zip(
        bbands(series.close, n, k), talib.BBANDS(series.close, n, k, k), strict=True
    ):
        assert_same(mine, ref)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 4, 2)])
def test_macd_matches_talib(series: Series, fast: int, slow: int, signal: int) -> None:
    for mine, ref in zip(
        macd(series.close, fast, slow, signal),
        talib.MACD(series.close, fast, slow, signal),
        strict=True,
    ):
        assert_same(mine, ref)


def test_macd_fast_ema_is_seeded_at_the_slow_start() -> None:
    """TA-Lib's quirk: MACD's fast EMA is not the standalone EMA(12) until it converges."""
    close = SERIES["random_walk_6000"].close
    line = macd(close)[0]
    standalone = ema(close, 12) - ema(close, 26)
    assert abs(line[33] - standalone[33]) > 1e-6
    assert_same(line, talib.MACD(close)[0])


def test_macd_swaps_fast_and_slow_like_talib(series: Series) -> None:
    swapped = zip(macd(series.close, 26, 12, 9), talib.MACD(series.close, 26, 12, 9), strict=True)
    for mine, ref in swapped:
        assert_same(mine, ref)


def test_volume_ratio_matches_talib_sma(series: Series) -> None:
    volume = series.volume.astype(np.float64)
    expected = volume / talib.SMA(volume, 20)
    assert_same(volume_ratio(series.volume, 20), expected)


def test_volume_ratio_is_undefined_where_the_average_volume_is_zero() -> None:
    volume = np.array([0] * 25 + [100, 0, 300] + [0] * 30 + [50] * 5, dtype=np.int64)
    ratio = volume_ratio(volume)
    average = talib.SMA(volume.astype(np.float64), 20)
    usable = np.isfinite(average) & (average != 0)
    assert (average == 0).any()
    assert np.isnan(ratio[~usable]).all()
    np.testing.assert_allclose(
        ratio[usable], volume[usable] / average[usable], rtol=RTOL, atol=ATOL
    )
    assert ratio[25] == pytest.approx(100 / 5.0)  # 100 over a window of twenty holding only it
    assert ratio[usable & (volume == 0)].tolist() == [0.0] * int((usable & (volume == 0)).sum())


CASES = [
    ("sma20", 19, lambda s: [sma(s.close, 20)], lambda s: [talib.SMA(s.close, 20)]),
    ("sma200", 199, lambda s: [sma(s.close, 200)], lambda s: [talib.SMA(s.close, 200)]),
    ("ema12", 11, lambda s: [ema(s.close, 12)], lambda s: [talib.EMA(s.close, 12)]),
    ("ema26", 25, lambda s: [ema(s.close, 26)], lambda s: [talib.EMA(s.close, 26)]),
    ("rsi14", 14, lambda s: [rsi(s.close, 14)], lambda s: [talib.RSI(s.close, 14)]),
    (
        "atr14",
        14,
        lambda s: [atr(s.high, s.low, s.close, 14)],
        lambda s: [talib.ATR(s.high, s.low, s.close, 14)],
    ),
    (
        "bbands",
        19,
        lambda s: list(bbands(s.close)),
        lambda s: list(talib.BBANDS(s.close, 20, 2, 2)),
    ),
    ("macd", 33, lambda s: list(macd(s.close)), lambda s: list(talib.MACD(s.close))),
    (
        "volume_ratio",
        19,
        lambda s: [volume_ratio(s.volume)],
        lambda s: [s.volume / talib.SMA(s.volume.astype(np.float64), 20)],
    ),
]


@pytest.mark.parametrize(("name", "lookback", "mine", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_short_series_around_the_lookback(
    name: str,
    lookback: int,
    mine: Callable[[Series], list[FloatArray]],
    theirs: Callable[[Series], list[FloatArray]],
) -> None:
    full = random_walk(lookback + 40, 13)
    for length in sorted({0, 1, 2, lookback - 1, lookback, lookback + 1, lookback + 2}):
        part = Series(full.close[:length], (full.high - full.close)[:length], full.volume[:length])
        outputs = mine(part)
        for out, ref in zip(outputs, theirs(part), strict=True):
            assert_same(out, np.asarray(ref, dtype=np.float64))
            # Defined from the lookback on, never earlier.
            assert np.isnan(out[:lookback]).all()
            assert not np.isnan(out[lookback:]).any()


def test_empty_input_gives_empty_output() -> None:
    empty = np.empty(0, dtype=np.float64)
    for out in (
        sma(empty, 20),
        ema(empty, 12),
        rsi(empty),
        atr(empty, empty, empty),
        *bbands(empty),
        *macd(empty),
        volume_ratio(np.empty(0, dtype=np.int64)),
    ):
        assert out.shape == (0,)
        assert out.dtype == np.float64


@pytest.mark.parametrize("price", [123.456, 0.1, 5000.0])
def test_flat_series(price: float) -> None:
    close = np.full(300, price)
    upper, middle, lower = bbands(close)
    assert_same(upper, talib.BBANDS(close, 20, 2, 2)[0])
    assert (upper[19:] == middle[19:]).all()
    assert (lower[19:] == middle[19:]).all()
    assert_same(rsi(close), talib.RSI(close))
    assert (rsi(close)[14:] == 0.0).all()  # TA-Lib's RSI of a series that never moves
    assert_same(atr(close, close, close), talib.ATR(close, close, close))
    assert (atr(close, close, close)[14:] == 0.0).all()
    for mine, ref in zip(macd(close), talib.MACD(close), strict=True):
        assert_same(mine, ref)
    assert_same(ema(close, 26), talib.EMA(close, 26))


def test_a_flat_stretch_after_moves_keeps_the_last_rsi() -> None:
    rng = np.random.default_rng(4)
    close = np.concatenate([100 + np.cumsum(rng.normal(0, 1, 60)), np.full(3000, 100.0)])
    assert_same(rsi(close), talib.RSI(close))
    assert_same(atr(close, close, close), talib.ATR(close, close, close))
    for mine, ref in zip(bbands(close), talib.BBANDS(close, 20, 2, 2), strict=True):
        assert_same(mine, ref)


def test_bands_keep_precision_on_a_high_price_that_barely_moves() -> None:
    """mean(x²) - mean(x)² would lose every digit here; TA-Lib and we do not."""
    rng = np.random.default_rng(6)
    close = 250_000.0 + np.cumsum(rng.normal(0.0, 1e-3, 2000))
    for mine, ref in zip(bbands(close), talib.BBANDS(close, 20, 2, 2), strict=True):
        assert_same(mine, ref)
    width = bbands(close)[0] - bbands(close)[2]
    np.testing.assert_allclose(width[19:], 4 * talib.STDDEV(close, 20, 1)[19:], rtol=1e-6)


def test_tiny_moves_are_not_rounded_to_a_flat_rsi() -> None:
    close = 1e-3 + np.array([0.0, 1e-12, 5e-13] * 20)
    assert_same(rsi(close), talib.RSI(close))
    assert 40 < rsi(close)[-1] < 60


def test_leading_nan_is_skipped_like_talib() -> None:
    s = random_walk(300, 21)
    close = s.close.copy()
    close[:7] = np.nan
    assert_same(sma(close, 20), talib.SMA(close, 20))
    assert_same(ema(close, 12), talib.EMA(close, 12))
    assert_same(rsi(close), talib.RSI(close))
    assert_same(atr(s.high, s.low, close), talib.ATR(s.high, s.low, close))
    for mine, ref in zip(macd(close), talib.MACD(close), strict=True):
        assert_same(mine, ref)
    for mine, ref in zip(bbands(close), talib.BBANDS(close, 20, 2, 2), strict=True):
        assert_same(mine, ref)


def test_long_series_keeps_precision() -> None:
    """50,000 points: no drift in the running sums or the recursive filters."""
    s = bounded_walk(50_000, 8)
    assert_same(sma(s.close, 200), talib.SMA(s.close, 200))
    assert_same(ema(s.close, 200), talib.EMA(s.close, 200))
    assert_same(rsi(s.close), talib.RSI(s.close))
    assert_same(atr(s.high, s.low, s.close), talib.ATR(s.high, s.low, s.close))
    for mine, ref in zip(macd(s.close), talib.MACD(s.close), strict=True):
        assert_same(mine, ref)


@pytest.mark.parametrize("call", [lambda: sma(np.ones(5), 0), lambda: rsi(np.ones(5), -1)])
def test_a_period_below_one_is_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        call()


def make_bars(s: Series) -> Bars:
    length = s.close.shape[0]
    return Bars(
        time=np.arange(length, dtype=np.int64) * 86_400,
        open=s.close.copy(),
        high=s.high,
        low=s.low,
        close=s.close,
        volume=s.volume.astype(np.int64),
    )


def test_compute_indicators_matches_talib_and_its_lookbacks() -> None:
    s = random_walk(5500, 17)
    frame = compute_indicators(make_bars(s))
    upper, middle, lower = talib.BBANDS(s.close, 20, 2, 2)
    line, signal, hist = talib.MACD(s.close, 12, 26, 9)
    expected = {
        "sma_20": talib.SMA(s.close, 20),
        "sma_50": talib.SMA(s.close, 50),
        "sma_200": talib.SMA(s.close, 200),
        "ema_12": talib.EMA(s.close, 12),
        "ema_26": talib.EMA(s.close, 26),
        "rsi_14": talib.RSI(s.close, 14),
        "macd": line,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr_14": talib.ATR(s.high, s.low, s.close, 14),
        "volume_ratio": s.volume / talib.SMA(s.volume.astype(np.float64), 20),
    }
    lookbacks = {
        "sma_20": 19,
        "sma_50": 49,
        "sma_200": 199,
        "ema_12": 11,
        "ema_26": 25,
        "rsi_14": 14,
        "macd": 33,
        "macd_signal": 33,
        "macd_hist": 33,
        "bb_upper": 19,
        "bb_middle": 19,
        "bb_lower": 19,
        "atr_14": 14,
        "volume_ratio": 19,
    }
    assert tuple(expected) == INDICATOR_NAMES
    assert len(frame) == 5500
    for name in INDICATOR_NAMES:
        values = getattr(frame, name)
        assert_same(values, expected[name])
        assert int(np.isnan(values).sum()) == lookbacks[name], name


def test_indicator_frame_fields_follow_the_names() -> None:
    assert tuple(IndicatorFrame.__dataclass_fields__) == INDICATOR_NAMES
    empty = IndicatorFrame.empty()
    assert len(empty) == 0
    assert all(getattr(empty, name).shape == (0,) for name in INDICATOR_NAMES)
    frame = compute_indicators(Bars.empty())
    assert all(getattr(frame, name).shape == (0,) for name in INDICATOR_NAMES)


def test_take_and_row() -> None:
    s = random_walk(400, 19)
    frame = compute_indicators(make_bars(s))
    tail = frame.take(slice(-10, None))
    assert len(tail) == 10
    assert tail.rsi_14[-1] == frame.rsi_14[-1]
    picked = frame.take(np.array([0, 399], dtype=np.int64))
    assert picked.sma_20[1] == frame.sma_20[399]

    first = frame.row(0)
    assert list(first) == list(INDICATOR_NAMES)
    assert all(value is None for value in first.values())  # nothing is defined on bar 0
    row = frame.row(250)
    assert all(isinstance(value, float) for value in row.values())
    assert row["sma_200"] == float(frame.sma_200[250])  # unrounded
    early = frame.row(20)
    assert early["sma_20"] is not None
    assert early["sma_50"] is None
    assert early["macd"] is None

    rounded = round_row(early)
    assert rounded["sma_50"] is None
    assert rounded["sma_20"] == round(float(frame.sma_20[20]), 4)
