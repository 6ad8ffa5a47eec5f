"""The reference history: realistic, consistent, deterministic and stable as days are added."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from numpy.typing import NDArray

from market.bars import Bars, FloatArray
from market.calendar import (
    BARS_PER_SESSION,
    DEFAULT_ASOF,
    ORIGIN,
    daily_times,
    intraday_days,
    intraday_times,
)
from market.history import daily_history, intraday_history, symbol_key, symbol_profile

SEED = 20261120
SYMBOLS = ("AAPL", "MSFT", "NVDA", "KO", "XOM", "SPY", "BRK.B", "^GSPC")
FIELDS = ("time", "open", "high", "low", "close", "volume")


def same(a: Bars, b: Bars) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def log_returns(bars: Bars) -> FloatArray:
    return np.asarray(np.diff(np.log(bars.close)), dtype=np.float64)


def excess_kurtosis(x: FloatArray) -> float:
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2 - 3.0)


def autocorrelation(x: FloatArray, lag: int) -> float:
    d = x - x.mean()
    return float(np.sum(d[lag:] * d[:-lag]) / np.sum(d * d))


def assert_ohlc_consistent(bars: Bars) -> None:
    assert np.all(bars.low > 0)
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(np.maximum(bars.open, bars.close) <= bars.high)
    for prices in (bars.open, bars.high, bars.low, bars.close):
        assert np.array_equal(np.round(prices, 4), prices)
    assert bars.volume.dtype == np.int64
    assert np.all(bars.volume > 0)


# --- profile -----------------------------------------------------------------------------


def test_profiles_are_believable_and_stable() -> None:
    for symbol in SYMBOLS:
        profile = symbol_profile(symbol)
        assert profile == symbol_profile(symbol)
        assert 15 <= profile.base_price <= 600
        assert 0.12 <= profile.annual_vol <= 0.6
        assert 4 <= profile.t_df <= 6
        assert profile.base_volume > 0
    assert len({symbol_profile(s).base_price for s in SYMBOLS}) == len(SYMBOLS)
    assert len({symbol_key(s) for s in SYMBOLS}) == len(SYMBOLS)
    assert all(0 <= symbol_key(s) < 2**63 for s in SYMBOLS)


# --- shape -------------------------------------------------------------------------------


def test_daily_history_covers_every_weekday_from_origin_to_asof() -> None:
    daily = daily_history(SEED, "AAPL", DEFAULT_ASOF)
    assert np.array_equal(daily.time, daily_times(ORIGIN, DEFAULT_ASOF))
    assert len(daily) > 20 * 260
    assert len(daily_history(SEED, "AAPL", date(2004, 12, 31))) == 0


def test_intraday_history_is_78_bars_for_each_day_of_the_window() -> None:
    intraday = intraday_history(SEED, "AAPL", DEFAULT_ASOF)
    assert np.array_equal(intraday.time, intraday_times(DEFAULT_ASOF))
    assert len(intraday) == BARS_PER_SESSION * len(intraday_days(DEFAULT_ASOF))
    short = intraday_history(SEED, "AAPL", DEFAULT_ASOF, days=7)
    assert len(short) == 5 * BARS_PER_SESSION
    assert np.array_equal(short.close, intraday.close[-len(short) :])


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_ohlc_is_consistent_rounded_and_positive(symbol: str) -> None:
    assert_ohlc_consistent(daily_history(SEED, symbol, DEFAULT_ASOF))
    assert_ohlc_consistent(intraday_history(SEED, symbol, DEFAULT_ASOF))


def test_arrays_are_read_only_so_a_caller_cannot_corrupt_the_shared_copy() -> None:
    daily = daily_history(SEED, "AAPL", DEFAULT_ASOF)
    with pytest.raises(ValueError, match="read-only"):
        daily.close[-1] = 0.0


# --- realism -----------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_daily_returns_have_fat_tails(symbol: str) -> None:
    returns = log_returns(daily_history(SEED, symbol, DEFAULT_ASOF))
    assert excess_kurtosis(returns) > 1.0


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_volatility_clusters(symbol: str) -> None:
    squared = log_returns(daily_history(SEED, symbol, DEFAULT_ASOF)) ** 2
    lags = [autocorrelation(squared, lag) for lag in range(1, 6)]
    # With 5,700 days the noise in one autocorrelation is about 0.013.
    assert min(lags) > 0.025
    assert float(np.mean(lags)) > 0.05


def test_realised_volatility_is_in_a_believable_range() -> None:
    for symbol in SYMBOLS:
        annual = float(np.std(log_returns(daily_history(SEED, symbol, DEFAULT_ASOF)))) * 252**0.5
        assert 0.08 < annual < 0.8


def test_days_open_with_a_gap_from_the_previous_close() -> None:
    daily = daily_history(SEED, "MSFT", DEFAULT_ASOF)
    gaps = np.log(daily.open[1:] / daily.close[:-1])
    assert np.mean(np.abs(gaps) > 1e-4) > 0.9
    session = np.log(daily.close / daily.open)
    share = float(np.var(gaps) / (np.var(gaps) + np.var(session[1:])))
    assert 0.05 < share < 0.5


def test_volume_is_larger_on_big_moves() -> None:
    daily = daily_history(SEED, "XOM", DEFAULT_ASOF)
    moves = np.abs(log_returns(daily))
    volume = daily.volume[1:]
    big = volume[moves > np.quantile(moves, 0.9)]
    calm = volume[moves < np.quantile(moves, 0.5)]
    assert np.median(big) > 1.3 * np.median(calm)


def test_intraday_volume_is_u_shaped() -> None:
    intraday = intraday_history(SEED, "KO", DEFAULT_ASOF)
    profile = intraday.volume.reshape(-1, BARS_PER_SESSION).mean(axis=0)
    edges = (profile[:6].mean() + profile[-6:].mean()) / 2
    assert edges > 1.8 * profile[30:48].mean()


# --- consistency and stability -----------------------------------------------------------


@pytest.mark.parametrize("symbol", ["AAPL", "^GSPC"])
def test_intraday_bars_aggregate_exactly_to_the_daily_bars(symbol: str) -> None:
    daily = daily_history(SEED, symbol, DEFAULT_ASOF)
    intraday = intraday_history(SEED, symbol, DEFAULT_ASOF)
    days = len(intraday) // BARS_PER_SESSION
    tail = daily.take(slice(len(daily) - days, None))

    def per_day(values: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.generic]:
        return values.reshape(days, BARS_PER_SESSION)

    assert np.array_equal(per_day(intraday.time)[:, 0], tail.time + 14 * 3600 + 1800)
    assert np.array_equal(per_day(intraday.open)[:, 0], tail.open)
    assert np.array_equal(per_day(intraday.close)[:, -1], tail.close)
    assert np.array_equal(per_day(intraday.high).max(axis=1), tail.high)
    assert np.array_equal(per_day(intraday.low).min(axis=1), tail.low)
    assert np.array_equal(per_day(intraday.volume).sum(axis=1), tail.volume)


def test_daily_history_is_prefix_stable() -> None:
    full = daily_history(SEED, "NVDA", DEFAULT_ASOF)
    for asof in (date(2005, 1, 3), date(2013, 7, 4), date(2026, 11, 19)):
        shorter = daily_history(SEED, "NVDA", asof)
        assert same(shorter, full.take(slice(0, len(shorter))))
        assert int(shorter.time[-1]) <= int(full.time[len(shorter) - 1])


def test_intraday_bars_of_a_day_do_not_depend_on_asof() -> None:
    later = intraday_history(SEED, "NVDA", DEFAULT_ASOF)
    earlier = intraday_history(SEED, "NVDA", date(2026, 10, 15))
    common = np.intersect1d(later.time, earlier.time)
    assert len(common) > 10 * BARS_PER_SESSION
    a = later.take(np.flatnonzero(np.isin(later.time, common)))
    b = earlier.take(np.flatnonzero(np.isin(earlier.time, common)))
    assert same(a, b)


def test_same_inputs_give_the_same_history_and_others_differ() -> None:
    base = daily_history(SEED, "AAPL", date(2010, 6, 30))
    assert same(base, daily_history(SEED, "AAPL", date(2010, 6, 30)))
    other_seed = daily_history(SEED + 1, "AAPL", date(2010, 6, 30))
    other_symbol = daily_history(SEED, "AAPM", date(2010, 6, 30))
    assert not np.array_equal(base.close, other_seed.close)
    assert not np.array_equal(base.close, other_symbol.close)
    assert not np.array_equal(log_returns(base), log_returns(other_seed))
