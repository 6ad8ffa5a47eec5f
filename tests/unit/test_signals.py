"""Signal agents and the ensemble: what a client sees in a Signal, and that it never wavers."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import date

import numpy as np
import pytest

from market.accuracy import agent_stats
from market.agents import (
    AGENT_LOOKBACK,
    AGENTS,
    bollinger_agent,
    ma_crossover_agent,
    rsi_agent,
    volume_agent,
)
from market.bars import Bars
from market.calendar import daily_times, iso_ms
from market.history import daily_history
from market.indicators import INDICATOR_NAMES, IndicatorFrame, compute_indicators
from market.signals import (
    PATTERN_TITLES,
    SCORE_THRESHOLD,
    SIGNAL_TIMEFRAMES,
    SignalResult,
    build_signal,
    ensemble,
    latest_signal,
    parse_signal_id,
    rank_signals,
    recent_signals,
    risk_label,
    signal_at,
)

ASOF = date(2026, 11, 20)


@pytest.fixture(scope="module")
def daily() -> tuple[Bars, IndicatorFrame]:
    bars = daily_history(11, "BRK-B", ASOF)
    return bars, compute_indicators(bars)


def bars_from_closes(closes: list[float] | np.ndarray, volume: int = 1_000_000) -> Bars:
    """Daily bars with these closes, each opening at the previous close, 1 % wicks."""
    close = np.asarray(closes, dtype=np.float64)
    opens = np.concatenate(([close[0]], close[:-1]))
    times = daily_times(date(2024, 1, 1), date(2030, 1, 1))[: close.shape[0]]
    return Bars(
        time=times,
        open=opens,
        high=np.maximum(opens, close) * 1.01,
        low=np.minimum(opens, close) * 0.99,
        close=close,
        volume=np.full(close.shape[0], volume, dtype=np.int64),
    )


def floats_in(value: object) -> Iterator[float]:
    """Every float inside a result (dataclasses, tuples, lists, dicts)."""
    if isinstance(value, float):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from floats_in(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from floats_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from floats_in(item)


# --- agents ---------------------------------------------------------------------------------


def test_agents_vote_on_every_bar_within_bounds(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    for spec in AGENTS:
        votes = spec.function(bars, ind)
        assert votes.vote.dtype == np.int8, spec.name
        assert votes.vote.shape == votes.confidence.shape == (len(bars),)
        assert set(np.unique(votes.vote).tolist()) <= {-1, 0, 1}, spec.name
        assert np.all((votes.confidence >= 0) & (votes.confidence <= 100)), spec.name
        # Over twenty years every agent takes both sides at least once.
        assert {-1, 1} <= set(votes.vote.tolist()), spec.name
    assert [spec.type for spec in AGENTS] == ["technical"] * len(AGENTS)
    assert len({spec.name for spec in AGENTS}) == len(AGENTS)


def test_agents_have_no_opinion_before_their_indicator_exists(
    daily: tuple[Bars, IndicatorFrame],
) -> None:
    bars, ind = daily
    first_rsi = int(np.flatnonzero(np.isfinite(ind.rsi_14))[0])
    votes = rsi_agent(bars, ind)
    assert np.all(votes.vote[:first_rsi] == 0)
    assert np.all(votes.confidence[:first_rsi] == 0)
    assert np.all(votes.confidence[first_rsi:] > 0)
    # Before SMA 200 exists (200 bars) no agent reading it may speak, and on bar 0 none does.
    for spec in AGENTS:
        assert spec.function(bars, ind).confidence[0] == 0, spec.name


def test_rsi_agent_buys_a_sell_off_and_sells_a_rally() -> None:
    falling = bars_from_closes(100.0 * 0.98 ** np.arange(40))
    rising = bars_from_closes(100.0 * 1.02 ** np.arange(40))
    down_votes = rsi_agent(falling, compute_indicators(falling))
    up_votes = rsi_agent(rising, compute_indicators(rising))
    assert down_votes.vote[-1] == 1
    assert up_votes.vote[-1] == -1
    assert down_votes.confidence[-1] >= 55


def test_ma_crossover_agent_flags_the_golden_cross_bar() -> None:
    # Down for 60 bars, then up: SMA 20 crosses above SMA 50 on exactly one bar.
    closes = np.concatenate((np.linspace(150, 100, 60), np.linspace(101, 160, 60)))
    bars = bars_from_closes(closes)
    ind = compute_indicators(bars)
    votes = ma_crossover_agent(bars, ind)
    above = ind.sma_20 > ind.sma_50
    cross = int(np.flatnonzero(above[1:] & ~above[:-1])[0]) + 1
    assert votes.vote[cross] == 1
    assert votes.confidence[cross] == 85
    assert votes.vote[cross - 1] in (-1, 0)


def test_bollinger_and_volume_agents_read_their_triggers() -> None:
    closes = np.full(40, 100.0) + np.tile([0.5, -0.5], 20)
    closes[-1] = 90.0  # far below the lower band, on a down bar
    bars = bars_from_closes(closes)
    volume = bars.volume.copy()
    volume[-1] *= 3
    bars = dataclasses.replace(bars, volume=volume)
    ind = compute_indicators(bars)
    assert bollinger_agent(bars, ind).vote[-1] == 1
    assert volume_agent(bars, ind).vote[-1] == -1
    assert volume_agent(bars, ind).vote[-2] == 0


# --- ensemble -------------------------------------------------------------------------------


def test_ensemble_follows_its_stated_rule(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    ens = ensemble(bars, ind)
    assert np.all((ens.confidence >= 0) & (ens.confidence <= 100))
    assert np.all(np.abs(ens.score) <= 1)
    assert np.array_equal(ens.type == 1, ens.score >= SCORE_THRESHOLD)
    assert np.array_equal(ens.type == -1, ens.score <= -SCORE_THRESHOLD)
    # Every kind of signal appears over twenty years; bar 0 has no indicator, hence no opinion.
    assert set(ens.type.tolist()) == {-1, 0, 1}
    assert ens.type[0] == 0
    assert ens.confidence[0] == 0
    # A HOLD is at least 30 confident (its edge is small), a BUY/SELL carries its agents' weight.
    opinion = ens.confidence > 0
    assert np.all(ens.confidence[opinion & (ens.type == 0)] >= 30)


def test_signal_fields_ids_and_levels(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    ens = ensemble(bars, ind)
    seen = set()
    for i in range(len(bars) - 400, len(bars)):
        s = signal_at("brk-b", "1d", bars, ind, i)
        epoch = int(bars.time[i])
        assert s.id == f"BRK-B-1d-{epoch}"
        assert s.symbol == "BRK-B"
        assert s.timestamp == iso_ms(epoch)
        assert s.type == {1: "BUY", -1: "SELL", 0: "HOLD"}[int(ens.type[i])]
        assert s.confidence == round(float(ens.confidence[i]), 2)
        assert s.entry == round(float(bars.close[i]), 4)
        if s.type == "SELL":
            assert s.take_profit < s.entry < s.stop_loss
        else:
            assert s.stop_loss < s.entry < s.take_profit
        # Target 3 ATR away, stop 2 ATR away.
        assert abs(s.take_profit - s.entry) == pytest.approx(
            1.5 * abs(s.entry - s.stop_loss), rel=1e-5
        )
        assert s.risk in ("LOW", "MEDIUM", "HIGH")
        assert s.pattern in PATTERN_TITLES
        assert s.reasoning
        assert all(isinstance(r, str) and r for r in s.reasoning)
        assert [a.agent for a in s.agents] == [spec.name for spec in AGENTS]
        assert all(a.vote in ("BUY", "SELL", "HOLD") for a in s.agents)
        assert s.indicators.trend in ("up", "down", "flat")
        assert all(math.isfinite(x) for x in floats_in(s))
        seen.add(s.type)
    assert seen == {"BUY", "SELL", "HOLD"}


def test_a_hold_has_no_clear_edge_and_a_trade_agrees_with_its_pattern(
    daily: tuple[Bars, IndicatorFrame],
) -> None:
    bars, ind = daily
    directional_only = {"oversold_bounce", "overbought_reversal", "trend_continuation"}
    patterns = set()
    for s in recent_signals("BRK-B", "1d", bars, ind, count=300):
        patterns.add(s.pattern)
        if s.type == "HOLD":
            assert s.pattern not in directional_only | {"momentum_shift"}
        else:
            assert s.pattern != "consolidation"
        if s.pattern == "oversold_bounce":
            assert s.type == "BUY"
        if s.pattern == "overbought_reversal":
            assert s.type == "SELL"
    assert len(patterns) >= 4


def test_a_signal_is_the_same_from_any_slice_of_history(
    daily: tuple[Bars, IndicatorFrame],
) -> None:
    bars, ind = daily
    full = ensemble(bars, ind)
    for i in (0, 5, AGENT_LOOKBACK, 250, len(bars) // 2, len(bars) - 1):
        expected = build_signal("BRK-B", "1d", bars, ind, full, i)
        assert signal_at("BRK-B", "1d", bars, ind, i) == expected
        # History growing after the bar never changes the bar's signal.
        head = bars.take(slice(0, i + 1))
        assert latest_signal("BRK-B", "1d", head, compute_indicators(head)) == expected


def test_same_input_same_signals(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    first = recent_signals("BRK-B", "1d", bars, ind)
    again = recent_signals("BRK-B", "1d", bars, compute_indicators(bars))
    assert first == again
    assert latest_signal("BRK-B", "1d", bars, ind) == first[0]


def test_recent_signals_are_newest_first(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    signals = recent_signals("BRK-B", "1d", bars, ind, count=7)
    assert [s.timestamp for s in signals] == [iso_ms(int(t)) for t in bars.time[-1:-8:-1]]
    assert recent_signals("BRK-B", "1d", bars, ind, count=0) == []
    short = bars.take(slice(0, 3))
    assert len(recent_signals("X", "1d", short, ind.take(slice(0, 3)), count=10)) == 3


def test_signal_at_refuses_bad_timeframes_and_indexes(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    with pytest.raises(ValueError, match="timeframe"):
        signal_at("BRK-B", "1wk", bars, ind, 0)
    with pytest.raises(IndexError):
        signal_at("BRK-B", "1d", bars, ind, len(bars))
    assert signal_at("BRK-B", "1d", bars, ind, -1) == latest_signal("BRK-B", "1d", bars, ind)


def test_early_bars_give_a_hold_without_nan() -> None:
    bars = bars_from_closes([10.0, 10.5, 10.2])
    ind = IndicatorFrame(**{name: np.full(3, np.nan) for name in INDICATOR_NAMES})
    s = latest_signal("NEW", "1d", bars, ind)
    assert s.type == "HOLD"
    assert s.confidence == 0
    assert s.indicators.rsi_14 is None
    assert s.indicators.macd_hist is None
    assert s.indicators.volume_ratio is None
    assert s.indicators.trend == "flat"
    assert s.stop_loss < s.entry < s.take_profit
    assert all(math.isfinite(x) for x in floats_in(s))


def test_risk_label_thresholds() -> None:
    assert risk_label(1.49, 100.0) == "LOW"
    assert risk_label(1.5, 100.0) == "MEDIUM"
    assert risk_label(2.99, 100.0) == "MEDIUM"
    assert risk_label(3.0, 100.0) == "HIGH"


# --- ids and ranking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal_id", "expected"),
    [
        ("AAPL-1d-1795132800", ("AAPL", "1d", 1795132800)),
        ("BRK-B-1d-1795132800", ("BRK-B", "1d", 1795132800)),
        ("brk-b-15m-1795132800", ("BRK-B", "15m", 1795132800)),
        ("^GSPC-4h-0", ("^GSPC", "4h", 0)),
        ("AAPL-1wk-1795132800", None),
        ("AAPL-1d-", None),
        ("AAPL-1d-12x", None),
        ("1d-1795132800", None),
        ("-1d-1795132800", None),
        ("AAPL_X-1d-1795132800", None),
        ("TOOLONGSYMBOLX-1d-1", None),
        ("", None),
    ],
)
def test_parse_signal_id(signal_id: str, expected: tuple[str, str, int] | None) -> None:
    assert parse_signal_id(signal_id) == expected


def test_every_signal_id_parses_back(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    for timeframe in SIGNAL_TIMEFRAMES:
        s = latest_signal("BRK-B", timeframe, bars, ind)
        assert parse_signal_id(s.id) == ("BRK-B", timeframe, int(bars.time[-1]))


def test_rank_signals_by_confidence_then_symbol(daily: tuple[Bars, IndicatorFrame]) -> None:
    bars, ind = daily
    base = latest_signal("BRK-B", "1d", bars, ind)

    def variant(symbol: str, confidence: float) -> SignalResult:
        return dataclasses.replace(
            base, symbol=symbol, confidence=confidence, id=f"{symbol}-1d-{bars.time[-1]}"
        )

    signals = [variant("MSFT", 50.0), variant("AAPL", 50.0), variant("ZZ", 90.0), variant("A", 10)]
    ranked = rank_signals(signals)
    assert [(s.symbol, s.confidence) for s in ranked] == [
        ("ZZ", 90.0),
        ("AAPL", 50.0),
        ("MSFT", 50.0),
        ("A", 10),
    ]
    assert rank_signals(reversed(signals)) == ranked


# --- agents' accuracy -----------------------------------------------------------------------


def rsi_only(rsi: list[float]) -> IndicatorFrame:
    """A frame where only RSI is defined: every other agent stays silent."""
    n = len(rsi)
    values = {name: np.full(n, np.nan) for name in INDICATOR_NAMES}
    values["rsi_14"] = np.asarray(rsi, dtype=np.float64)
    return IndicatorFrame(**values)


def test_accuracy_counts_a_hand_checked_case() -> None:
    bars = bars_from_closes([10, 11, 12, 11, 10, 9, 10, 11])
    # RSI votes: BUY at 0, SELL at 2 and 3, BUY at 4 and 6, SELL at 7.
    ind = rsi_only([20, 50, 80, 80, 20, 50, 25, 75])
    stats = {s.name: s for s in agent_stats([(bars, ind)], horizon=2, window=8)}
    rsi = stats["rsi"]
    # Scored (a close 2 bars later exists): 0 BUY 10->12 right, 2 SELL 12->10 right,
    # 3 SELL 11->9 right, 4 BUY 10->10 flat, so wrong.
    assert (rsi.total_signals, rsi.correct_signals, rsi.accuracy) == (4, 3, 75.0)
    # Each of those RSI readings is 10 beyond its threshold, none turning: 55 + 15.
    assert rsi.avg_confidence == 70.0
    assert rsi.last_signal_at == iso_ms(int(bars.time[7]))
    assert (rsi.type, rsi.status) == ("technical", "active")
    for name in ("macd", "ma_crossover", "bollinger", "volume", "trend"):
        silent = stats[name]
        assert (silent.total_signals, silent.accuracy, silent.last_signal_at) == (0, 0.0, None)
    # A 5-bar window keeps bars 3..7, of which 3 (right) and 4 (wrong) are scored.
    narrow = agent_stats([(bars, ind)], horizon=2, window=5)[0]
    assert (narrow.total_signals, narrow.correct_signals, narrow.accuracy) == (2, 1, 50.0)
    # Two histories add up.
    both = agent_stats([(bars, ind), (bars, ind)], horizon=2, window=8)[0]
    assert (both.total_signals, both.correct_signals, both.accuracy) == (8, 6, 75.0)
    assert [s.name for s in agent_stats([], horizon=2)] == [spec.name for spec in AGENTS]


def test_accuracy_over_real_history_matches_a_plain_count(
    daily: tuple[Bars, IndicatorFrame],
) -> None:
    bars, ind = daily
    stats = agent_stats([(bars, ind)], horizon=5, window=250)
    n = len(bars)
    for spec, result in zip(AGENTS, stats, strict=True):
        votes = spec.function(bars, ind)
        total = correct = 0
        for j in range(n - 250, n - 5):
            if votes.vote[j] != 0:
                total += 1
                correct += int(np.sign(bars.close[j + 5] - bars.close[j]) == votes.vote[j])
        assert (result.total_signals, result.correct_signals) == (total, correct), spec.name
        assert 0 <= result.accuracy <= 100
        assert 0 <= result.avg_confidence <= 100
    assert stats == agent_stats([(bars, ind)], horizon=5, window=250)
