"""The reference history generator: a pure function of (seed, symbol, date).

Both backends and the loader call it, so a production backend loaded with seed S and as-of date
D holds exactly the bars the mock serves for S and D. Daily log returns follow a GARCH(1,1) with
Student-t shocks (fat tails, volatility clustering), split into an overnight gap and a session
move. Every day also gets a 78-bar intraday path (a Brownian bridge from its open to its close
with a U-shaped intraday volatility), and the daily bar is the exact aggregate of those rounded
5-minute bars, so intraday and daily data never disagree.

Every random array comes from its own numpy stream, drawn in day order with a fixed number of
draws per day: a longer history only appends days, it never changes earlier ones.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from market.bars import Bars, FloatArray, IntArray
from market.calendar import (
    BAR_SECONDS,
    BARS_PER_SESSION,
    INTRADAY_DAYS,
    ORIGIN,
    SESSION_OPEN_SECONDS,
    daily_times,
    intraday_days,
)

_TRADING_DAYS_PER_YEAR = 252
# Shocks beyond this many standard deviations are clipped: fat tails, but no 30-sigma days.
_SHOCK_CLIP = 9.0
# Weak pull of the log price towards its drifting anchor (per year), so that twenty years of a
# volatile stock stay within a believable price range instead of wandering off to cents.
_MEAN_REVERSION = 0.25
_PRICE_FLOOR = 0.0001

_STREAM_DAILY_SHOCKS = 0
_STREAM_INTRADAY_PATH = 1
_STREAM_WICKS = 2
_STREAM_DAY_VOLUME = 3
_STREAM_BAR_VOLUME = 4

_CACHE_SIZE = 128


@dataclass(frozen=True, slots=True)
class Profile:
    """A symbol's fixed character: price level, volatility, drift, liquidity and tail shape."""

    base_price: float
    annual_vol: float
    drift: float
    base_volume: float
    t_df: float
    garch_alpha: float
    garch_beta: float
    overnight_share: float


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def symbol_key(symbol: str) -> int:
    """A stable 63-bit integer for a symbol (never Python's salted hash())."""
    return int.from_bytes(_digest(symbol)[:8], "big") >> 1


def symbol_profile(symbol: str) -> Profile:
    """The symbol's profile, derived from a stable hash of its name."""
    raw = _digest("profile:" + symbol)
    u = [int.from_bytes(raw[i : i + 4], "big") / 2**32 for i in range(0, 32, 4)]
    alpha = 0.06 + 0.05 * u[5]
    persistence = 0.975 + 0.01 * u[6]
    return Profile(
        base_price=round(15.0 * (600.0 / 15.0) ** u[0], 2),
        annual_vol=0.12 + 0.48 * u[1] ** 1.5,
        drift=-0.02 + 0.14 * u[2],
        base_volume=3e5 * 100.0 ** u[3],
        t_df=4.5 + 1.5 * u[4],
        garch_alpha=alpha,
        garch_beta=persistence - alpha,
        overnight_share=0.15 + 0.15 * u[7],
    )


def _stream(seed: int, key: int, number: int) -> np.random.Generator:
    sequence = np.random.SeedSequence([seed % 2**64, key, number])
    return np.random.Generator(np.random.PCG64(sequence))


def _u_shape(strength: float) -> FloatArray:
    """A weight per bar of the session, higher at the open and the close, summing to 1."""
    x = (np.arange(BARS_PER_SESSION, dtype=np.float64) + 0.5) / BARS_PER_SESSION * 2.0 - 1.0
    weights = 1.0 + strength * x**2
    return np.asarray(weights / weights.sum(), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _DailyPath:
    log_open: FloatArray
    log_close: FloatArray
    sigma: FloatArray
    shock: FloatArray


def _daily_path(profile: Profile, seed: int, key: int, ndays: int) -> _DailyPath:
    """GARCH(1,1) with Student-t shocks, split into an overnight gap and a session move."""
    df = profile.t_df
    raw = _stream(seed, key, _STREAM_DAILY_SHOCKS).standard_t(df, size=(ndays, 2))
    shocks = np.clip(raw * math.sqrt((df - 2.0) / df), -_SHOCK_CLIP, _SHOCK_CLIP).tolist()

    target = profile.annual_vol**2 / _TRADING_DAYS_PER_YEAR
    alpha, beta = profile.garch_alpha, profile.garch_beta
    omega = target * (1.0 - alpha - beta)
    low_var, high_var = 0.1 * target, 16.0 * target
    gap_scale = math.sqrt(profile.overnight_share)
    session_scale = math.sqrt(1.0 - profile.overnight_share)
    drift = profile.drift / _TRADING_DAYS_PER_YEAR
    reversion = _MEAN_REVERSION / _TRADING_DAYS_PER_YEAR
    anchor = math.log(profile.base_price)

    log_open = [0.0] * ndays
    log_close = [0.0] * ndays
    sigma = [0.0] * ndays
    shock = [0.0] * ndays
    variance = target
    log_price = anchor
    # A sequential recursion over days: plain floats are far faster than numpy scalars here.
    for t, (z_gap, z_session) in enumerate(shocks):
        s = math.sqrt(variance)
        gap = s * gap_scale * z_gap
        move = s * session_scale * z_session
        mean = drift - 0.5 * variance - reversion * (log_price - anchor - drift * t)
        log_open[t] = log_price + gap
        log_price = log_open[t] + mean + move
        log_close[t] = log_price
        sigma[t] = s
        eps = gap + move
        shock[t] = eps / math.sqrt(target)
        variance = min(max(omega + alpha * eps * eps + beta * variance, low_var), high_var)
    return _DailyPath(
        log_open=np.array(log_open),
        log_close=np.array(log_close),
        sigma=np.array(sigma),
        shock=np.array(shock),
    )


@dataclass(frozen=True, slots=True)
class _Sessions:
    """The (ndays, 78) intraday matrices, rounded and consistent."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray


def _sessions(profile: Profile, seed: int, key: int, path: _DailyPath) -> _Sessions:
    """Every day's 78 bars: a bridge from its open to its close, wicks, U-shaped volume."""
    ndays = path.log_open.shape[0]
    shape = (ndays, BARS_PER_SESSION)
    bar_var = _u_shape(1.5)
    cum_var = np.cumsum(bar_var)
    cum_var[-1] = 1.0

    session_sigma = path.sigma * math.sqrt(1.0 - profile.overnight_share)
    steps = _stream(seed, key, _STREAM_INTRADAY_PATH).standard_normal(shape)
    steps *= np.sqrt(bar_var)
    walk = np.cumsum(steps, axis=1)
    # A Brownian bridge: the walk minus its share of the end point, pinned at 0 at the close.
    bridge = walk - cum_var * walk[:, -1:]
    move = path.log_close - path.log_open
    log_close = path.log_open[:, None] + cum_var * move[:, None] + session_sigma[:, None] * bridge
    log_close[:, -1] = path.log_close
    log_open = np.empty(shape)
    log_open[:, 0] = path.log_open
    log_open[:, 1:] = log_close[:, :-1]

    bar_sigma = session_sigma[:, None] * np.sqrt(bar_var)
    wicks = _stream(seed, key, _STREAM_WICKS).standard_exponential((ndays, BARS_PER_SESSION, 2))
    top = np.maximum(log_open, log_close) + 0.4 * bar_sigma * wicks[:, :, 0]
    bottom = np.minimum(log_open, log_close) - 0.4 * bar_sigma * wicks[:, :, 1]

    open_ = np.maximum(np.round(np.exp(log_open), 4), _PRICE_FLOOR)
    close = np.maximum(np.round(np.exp(log_close), 4), _PRICE_FLOOR)
    high = np.maximum(np.round(np.exp(top), 4), np.maximum(open_, close))
    low = np.minimum(np.round(np.exp(bottom), 4), np.minimum(open_, close))
    low = np.maximum(low, _PRICE_FLOOR)

    # Volume: busier on big days and in volatile regimes, U-shaped within the session, and
    # higher on bars that move.
    day_noise = _stream(seed, key, _STREAM_DAY_VOLUME).standard_normal(ndays)
    regime = path.sigma / math.sqrt(profile.annual_vol**2 / _TRADING_DAYS_PER_YEAR)
    day_volume = (
        profile.base_volume
        * np.exp(0.25 * day_noise - 0.03)
        * (0.7 + 0.3 * np.abs(path.shock))
        * np.sqrt(regime)
    )
    bar_noise = _stream(seed, key, _STREAM_BAR_VOLUME).standard_normal(shape)
    bar_move = np.abs(log_close - log_open) / bar_sigma
    bar_volume = (
        day_volume[:, None]
        * _u_shape(2.5)
        * np.exp(0.3 * bar_noise - 0.045)
        * (0.75 + 0.3 * bar_move)
    )
    volume = np.maximum(np.rint(bar_volume), 1.0).astype(np.int64)
    return _Sessions(open=open_, high=high, low=low, close=close, volume=volume)


def _frozen(bars: Bars) -> Bars:
    for array in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume):
        array.flags.writeable = False
    return bars


@lru_cache(maxsize=_CACHE_SIZE)
def _build(seed: int, symbol: str, asof: date, days: int) -> tuple[Bars, Bars]:
    """The daily history to `asof` and the intraday bars of its last `days` calendar days."""
    times = daily_times(ORIGIN, asof)
    ndays = int(times.shape[0])
    if ndays == 0:
        return Bars.empty(), Bars.empty()
    profile = symbol_profile(symbol)
    key = symbol_key(symbol)
    sessions = _sessions(profile, seed, key, _daily_path(profile, seed, key, ndays))

    daily = Bars(
        time=times,
        open=np.ascontiguousarray(sessions.open[:, 0]),
        high=sessions.high.max(axis=1),
        low=sessions.low.min(axis=1),
        close=np.ascontiguousarray(sessions.close[:, -1]),
        volume=sessions.volume.sum(axis=1),
    )

    window = min(len(intraday_days(asof, days)) if days > 0 else 0, ndays)
    rows = slice(ndays - window, ndays)
    offsets = SESSION_OPEN_SECONDS + BAR_SECONDS * np.arange(BARS_PER_SESSION, dtype=np.int64)
    intraday = Bars(
        time=(times[rows, None] + offsets).ravel(),
        open=sessions.open[rows].ravel(),
        high=sessions.high[rows].ravel(),
        low=sessions.low[rows].ravel(),
        close=sessions.close[rows].ravel(),
        volume=sessions.volume[rows].ravel(),
    )
    return _frozen(daily), _frozen(intraday)


def daily_history(seed: int, symbol: str, asof: date) -> Bars:
    """Daily bars (time 00:00 UTC) for every weekday from ORIGIN to `asof` inclusive.

    Arrays are read-only and shared between callers (memoised); copy before changing them.
    """
    return _build(seed, symbol, asof, INTRADAY_DAYS)[0]


def intraday_history(seed: int, symbol: str, asof: date, days: int = INTRADAY_DAYS) -> Bars:
    """5-minute bars (78 a session, 14:30-21:00 UTC) of the trading days of the `days` calendar
    days ending on `asof`; a day's bars do not depend on `asof`. Arrays are read-only.
    """
    return _build(seed, symbol, asof, days)[1]


def clear_cache() -> None:
    """Forget memoised histories (for benchmarks that time a cold generation)."""
    _build.cache_clear()
