"""The live feed (pure, the same in every process) and the Quote built from it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from market.bars import Bars, FloatArray
from market.feed import TICK_SECONDS, live_price
from market.history import daily_history
from market.quotes import QuoteResult, build_quote

SEED = 7
AT = 1_795_219_200.0  # 2026-11-21T00:00:00Z
ROOT = Path(__file__).resolve().parents[2]


def prices(symbol: str = "AAPL", last_close: float = 100.0, n: int = 3000) -> FloatArray:
    return np.array([live_price(SEED, symbol, last_close, AT + i * TICK_SECONDS) for i in range(n)])


# --- feed --------------------------------------------------------------------------------


def test_price_depends_only_on_the_second() -> None:
    first = live_price(SEED, "AAPL", 100.0, AT + 0.01)
    assert live_price(SEED, "AAPL", 100.0, AT + 0.99) == first
    assert live_price(SEED, "AAPL", 100.0, AT) == first


def test_price_is_the_same_in_another_process() -> None:
    code = (
        "from market.feed import live_price; from market.history import daily_history;"
        "from datetime import date;"
        f"print(live_price({SEED}, 'MSFT', 250.0, {AT + 17.5}),"
        f" float(daily_history({SEED}, 'MSFT', date(2010, 1, 4)).close[-1]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert float(out[0]) == live_price(SEED, "MSFT", 250.0, AT + 17.5)
    assert float(out[1]) == float(daily_history(SEED, "MSFT", date(2010, 1, 4)).close[-1])


def test_price_stays_within_one_and_a_half_percent_and_is_rounded() -> None:
    series = prices(n=5000)
    assert np.all(np.abs(series / 100.0 - 1.0) <= 0.015)
    assert np.array_equal(np.round(series, 4), series)
    # It does wander: not pinned to the close.
    assert series.max() - series.min() > 0.2


def test_price_usually_moves_each_tick_with_small_steps() -> None:
    series = prices(n=2000)
    steps = np.diff(series)
    assert np.mean(steps != 0) > 0.9
    # Random-walk look: one tick moves far less than the price wanders over the run.
    assert np.median(np.abs(steps)) < 0.25 * float(series.std())


def test_price_scales_with_last_close_and_differs_by_symbol_and_seed() -> None:
    low = live_price(SEED, "AAPL", 10.0, AT)
    high = live_price(SEED, "AAPL", 1000.0, AT)
    assert high == pytest.approx(low * 100, rel=1e-3)
    assert not np.array_equal(prices("AAPL", n=50), prices("MSFT", n=50))
    other_seed = [live_price(SEED + 1, "AAPL", 100.0, AT + i) for i in range(50)]
    assert not np.array_equal(prices("AAPL", n=50), np.array(other_seed))


# --- quotes ------------------------------------------------------------------------------


def two_days() -> Bars:
    return Bars(
        time=np.array([1_795_046_400, 1_795_132_800], dtype=np.int64),
        open=np.array([99.0, 101.0]),
        high=np.array([102.0, 103.5]),
        low=np.array([98.5, 100.25]),
        close=np.array([100.0, 102.0]),
        volume=np.array([1_000_000, 1_234_567], dtype=np.int64),
    )


def test_quote_without_a_live_price_uses_the_last_close() -> None:
    quote = build_quote("AAPL", two_days(), None, AT + 0.5)
    assert quote == QuoteResult(
        symbol="AAPL",
        price=102.0,
        change=2.0,
        change_percent=2.0,
        volume=1_234_567,
        open=101.0,
        high=103.5,
        low=100.25,
        previous_close=100.0,
        bid=101.9898,
        ask=102.0102,
        timestamp="2026-11-21T00:00:00.500Z",
    )


def test_quote_with_a_live_price_stretches_high_and_low() -> None:
    above = build_quote("AAPL", two_days(), 104.12345, AT)
    assert above.price == 104.1235
    assert above.high == 104.1235
    assert above.low == 100.25
    assert above.change == 4.1235
    assert above.change_percent == 4.1235
    below = build_quote("AAPL", two_days(), 97.0, AT)
    assert below.low == 97.0
    assert below.high == 103.5
    assert below.change == -3.0
    assert below.change_percent == -3.0


def test_spread_is_two_basis_points_with_a_one_cent_floor() -> None:
    cheap = build_quote("PENNY", two_days(), 5.0, AT)
    assert (cheap.bid, cheap.ask) == (4.995, 5.005)
    dear = build_quote("DEAR", two_days(), 1000.0, AT)
    assert (dear.bid, dear.ask) == (999.9, 1000.1)


def test_change_percent_keeps_four_decimals() -> None:
    days = two_days()
    thirds = Bars(days.time, days.open, days.high, days.low, np.array([3.0, 3.05]), days.volume)
    quote = build_quote("LOW", thirds, 3.1, AT)
    assert quote.previous_close == 3.0
    assert quote.change == 0.1
    assert quote.change_percent == 3.3333


def test_quote_needs_two_daily_bars() -> None:
    with pytest.raises(ValueError, match="2 daily bars"):
        build_quote("AAPL", two_days().take(slice(1, 2)), 100.0, AT)
    with pytest.raises(ValueError, match="2 daily bars"):
        build_quote("AAPL", Bars.empty(), None, AT)
