"""Signals, options signals, insights, opportunities, agents and strategies."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import httpx
import pytest

from contract.types import (
    AgentList,
    GeneratedSignal,
    Historical,
    Insights,
    Opportunities,
    OptionsSignals,
    Signal,
    SignalList,
    StrategyList,
    SymbolList,
    SymbolSignals,
)

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _iso(epoch: int) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%dT%H:%M:%S}.000Z"


def _bar_epoch(signal: Signal) -> int:
    symbol, timeframe, epoch = signal.id.rsplit("-", 2)
    assert (symbol, timeframe) == (signal.symbol, signal.timeframe), signal.id
    return int(epoch)


def check_signal(signal: Signal) -> None:
    """What a frontend relies on in every Signal."""
    assert re.fullmatch(r"[A-Z0-9.\-^]{1,12}-(5m|15m|30m|1h|4h|1d)-\d+", signal.id), signal.id
    assert signal.timestamp == _iso(_bar_epoch(signal)), "timestamp is the bar's time"
    assert signal.reasoning
    assert all(isinstance(line, str) and line for line in signal.reasoning)
    assert signal.agents, "no agent votes"
    assert signal.pattern
    if signal.type == "BUY":
        assert signal.stop_loss < signal.entry < signal.take_profit, signal
    elif signal.type == "SELL":
        assert signal.take_profit < signal.entry < signal.stop_loss, signal
    if signal.indicators.rsi_14 is not None:
        assert 0 <= signal.indicators.rsi_14 <= 100


@pytest.fixture(scope="module")
def served(client: httpx.Client, expect, reader) -> list[str]:
    listing = expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList)
    return [item.symbol for item in listing.symbols]


@pytest.fixture(scope="module")
def all_signals(client: httpx.Client, expect, reader) -> SignalList:
    return expect.ok(client.get(f"{API}/signals", headers=reader), SignalList)


def _last_candle_time(client: httpx.Client, expect, reader, period: str, interval: str) -> int:
    response = client.get(
        f"{API}/market-data/SPY/historical",
        params={"period": period, "interval": interval},
        headers=reader,
    )
    return expect.ok(response, Historical).data[-1].time


# -- signal lists ---------------------------------------------------------------------------


def test_signals_rank_by_confidence_then_symbol(all_signals: SignalList, served) -> None:
    signals = all_signals.signals
    assert all_signals.count == len(signals) == min(50, len(served))
    keys = [(-s.confidence, s.symbol) for s in signals]
    assert keys == sorted(keys)
    assert len({s.symbol for s in signals}) == len(signals), "one latest signal per symbol"
    assert {s.symbol for s in signals} <= set(served)
    for signal in signals:
        assert signal.timeframe == "1d"
        check_signal(signal)


def test_signals_are_public(client: httpx.Client, expect) -> None:
    answer = expect.ok(client.get(f"{API}/signals", params={"symbols": "SPY"}), SignalList)
    assert [s.symbol for s in answer.signals] == ["SPY"]


def test_signals_for_chosen_symbols_drop_duplicates(client: httpx.Client, expect, reader) -> None:
    answer = expect.ok(
        client.get(f"{API}/signals", params={"symbols": "spy,AAPL,SPY"}, headers=reader),
        SignalList,
    )
    assert answer.count == 2
    assert sorted(s.symbol for s in answer.signals) == ["AAPL", "SPY"]


def test_signals_limit_keeps_the_top_ranked(
    client: httpx.Client, expect, reader, all_signals: SignalList
) -> None:
    answer = expect.ok(
        client.get(f"{API}/signals", params={"limit": 3}, headers=reader), SignalList
    )
    assert [s.id for s in answer.signals] == [s.id for s in all_signals.signals[:3]]
    assert answer.count == 3


def test_signals_min_confidence_filters(
    client: httpx.Client, expect, reader, all_signals: SignalList
) -> None:
    cut = sorted(s.confidence for s in all_signals.signals)[len(all_signals.signals) // 2]
    answer = expect.ok(
        client.get(f"{API}/signals", params={"min_confidence": cut}, headers=reader), SignalList
    )
    assert answer.signals
    assert all(s.confidence >= cut for s in answer.signals)
    assert answer.count == sum(1 for s in all_signals.signals if s.confidence >= cut)


@pytest.mark.parametrize(
    ("timeframe", "period"), [("5m", "1h"), ("15m", "1d"), ("1h", "1d"), ("4h", "5d"), ("1d", "5d")]
)
def test_latest_signal_is_for_the_latest_bar_of_its_timeframe(
    client: httpx.Client, expect, reader, timeframe: str, period: str
) -> None:
    answer = expect.ok(
        client.get(
            f"{API}/signals", params={"symbols": "SPY", "timeframe": timeframe}, headers=reader
        ),
        SignalList,
    )
    (signal,) = answer.signals
    assert signal.timeframe == timeframe
    check_signal(signal)
    assert _bar_epoch(signal) == _last_candle_time(client, expect, reader, period, timeframe)


def test_symbol_signals_are_newest_first(
    client: httpx.Client, expect, reader, all_signals: SignalList
) -> None:
    answer = expect.ok(client.get(f"{API}/signals/spy", headers=reader), SymbolSignals)
    assert answer.symbol == "SPY"
    assert answer.count == len(answer.signals) > 0
    epochs = [_bar_epoch(s) for s in answer.signals]
    assert epochs == sorted(epochs, reverse=True)
    assert len(set(epochs)) == len(epochs)
    for signal in answer.signals:
        assert signal.symbol == "SPY"
        check_signal(signal)
    latest = next(s for s in all_signals.signals if s.symbol == "SPY")
    assert answer.signals[0].id == latest.id
    assert answer.signals[0].confidence == latest.confidence


def test_symbol_signals_honour_the_timeframe(client: httpx.Client, expect, reader) -> None:
    answer = expect.ok(
        client.get(f"{API}/signals/SPY", params={"timeframe": "1h"}, headers=reader),
        SymbolSignals,
    )
    assert answer.signals
    assert all(s.timeframe == "1h" and s.id.startswith("SPY-1h-") for s in answer.signals)


# -- options signals and route precedence ---------------------------------------------------


def test_precise_options_is_never_taken_for_a_symbol(client: httpx.Client, expect, reader) -> None:
    response = client.get(
        f"{API}/signals/precise-options", params={"symbol": "spy"}, headers=reader
    )
    answer = expect.ok(response, OptionsSignals)
    assert (answer.symbol, answer.timeframe) == ("SPY", "1d")
    for option in answer.signals:
        assert option.symbol == "SPY"
        assert option.signal_id.startswith("SPY-1d-")
        low, high = option.entry_zone
        assert low <= high
        assert option.targets
        assert option.exit_rules
        assert ISO_MS.match(option.timestamp)
        signal_day = date.fromisoformat(option.timestamp[:10])
        assert date.fromisoformat(option.expiration_date) > signal_day


def test_precise_options_honours_the_timeframe(client: httpx.Client, expect, reader) -> None:
    response = client.get(
        f"{API}/signals/precise-options",
        params={"symbol": "SPY", "timeframe": "1h"},
        headers=reader,
    )
    answer = expect.ok(response, OptionsSignals)
    assert answer.timeframe == "1h"
    assert all(o.signal_id.startswith("SPY-1h-") for o in answer.signals)


def test_precise_options_without_a_symbol_is_a_422_not_a_symbol(
    client: httpx.Client, expect, reader
) -> None:
    expect.field(client.get(f"{API}/signals/precise-options", headers=reader), "symbol")


def test_precise_options_of_an_unserved_symbol_is_404(client: httpx.Client, expect, reader) -> None:
    expect.error(
        client.get(f"{API}/signals/precise-options", params={"symbol": "ZZZZ"}, headers=reader),
        404,
    )


# -- insights -------------------------------------------------------------------------------


def test_insights_of_a_signal(client: httpx.Client, expect, reader) -> None:
    signals = expect.ok(client.get(f"{API}/signals/SPY", headers=reader), SymbolSignals).signals
    for signal in (signals[0], signals[-1]):
        answer = expect.ok(
            client.get(f"{API}/signals/{signal.id}/insights", headers=reader), Insights
        )
        assert (answer.signal_id, answer.symbol) == (signal.id, "SPY")
        assert answer.summary
        assert answer.prediction.horizon_days > 0
        assert answer.prediction.target_price > 0
        assert answer.risk.volatility >= 0
        assert answer.risk.max_drawdown >= 0
        assert all(price > 0 for price in answer.technical.support + answer.technical.resistance)
        label = answer.sentiment.label
        if answer.sentiment.score > 0.2:
            assert label in ("bullish", "very_bullish"), answer.sentiment
        if answer.sentiment.score < -0.2:
            assert label in ("bearish", "very_bearish"), answer.sentiment


@pytest.mark.parametrize(
    "signal_id", ["SPY-1d-1", "ZZZZ-1d-1763596800", "not-a-signal", "SPY-1wk-1763596800"]
)
def test_insights_of_an_unknown_signal_is_404(
    client: httpx.Client, expect, reader, signal_id: str
) -> None:
    expect.error(client.get(f"{API}/signals/{signal_id}/insights", headers=reader), 404)


# -- generate -------------------------------------------------------------------------------


def test_generate_answers_the_signal_of_the_latest_bar(
    client: httpx.Client, expect, demo, all_signals: SignalList
) -> None:
    response = client.post(f"{API}/signals/generate", json={"symbol": "spy"}, headers=demo.headers)
    generated = expect.ok(response, GeneratedSignal).signal
    check_signal(generated)
    latest = next(s for s in all_signals.signals if s.symbol == "SPY")
    assert (generated.id, generated.type, generated.confidence) == (
        latest.id,
        latest.type,
        latest.confidence,
    )


def test_generate_honours_the_timeframe(client: httpx.Client, expect, demo, reader) -> None:
    response = client.post(
        f"{API}/signals/generate", json={"symbol": "SPY", "timeframe": "1h"}, headers=demo.headers
    )
    generated = expect.ok(response, GeneratedSignal).signal
    assert generated.timeframe == "1h"
    assert _bar_epoch(generated) == _last_candle_time(client, expect, reader, "1d", "1h")


def test_generate_needs_a_token(client: httpx.Client, expect) -> None:
    expect.error(client.post(f"{API}/signals/generate", json={"symbol": "SPY"}), 401)


# -- opportunities, agents, strategies ------------------------------------------------------


def test_opportunities_rank_by_ai_score(client: httpx.Client, expect, reader) -> None:
    listing = expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList)
    by_symbol = {item.symbol: item for item in listing.symbols}
    answer = expect.ok(client.get(f"{API}/market/opportunities", headers=reader), Opportunities)
    assert 1 <= len(answer.opportunities) <= 5
    assert ISO_MS.match(answer.timestamp)
    scores = [o.ai_score for o in answer.opportunities]
    assert scores == sorted(scores, reverse=True)
    for item in answer.opportunities:
        listing_item = by_symbol[item.symbol]
        assert (item.name, item.sector) == (listing_item.name, listing_item.sector)
        assert item.current_price > 0
        assert item.volume >= 0
        assert item.volatility >= 0
    assert len({o.id for o in answer.opportunities}) == len(answer.opportunities)


def test_opportunities_limit(client: httpx.Client, expect, reader) -> None:
    top = expect.ok(
        client.get(f"{API}/market/opportunities", params={"limit": 2}, headers=reader),
        Opportunities,
    )
    more = expect.ok(
        client.get(f"{API}/market/opportunities", params={"limit": 10}, headers=reader),
        Opportunities,
    )
    assert len(top.opportunities) <= 2
    assert len(more.opportunities) <= 10
    assert [o.id for o in top.opportunities] == [o.id for o in more.opportunities[:2]]


def test_agents_report_their_accuracy(client: httpx.Client, expect) -> None:
    answer = expect.ok(client.get(f"{API}/agents"), AgentList)
    assert len(answer.agents) >= 5
    assert len({agent.name for agent in answer.agents}) == len(answer.agents)
    for agent in answer.agents:
        assert 0 <= agent.correct_signals <= agent.total_signals
        assert 0 <= agent.accuracy <= 100
        if agent.total_signals:
            assert agent.accuracy == pytest.approx(
                agent.correct_signals / agent.total_signals * 100, abs=0.01
            )
        if agent.last_signal_at is not None:
            assert ISO_MS.match(agent.last_signal_at)


def test_strategies_declare_their_parameters(client: httpx.Client, expect) -> None:
    response = client.get(f"{API}/strategies")
    answer = expect.ok(response, StrategyList)
    # The typed decode widens numbers to float; what a frontend reads is the raw JSON.
    raw = {s["name"]: s["params"] for s in response.json()["strategies"]}
    assert answer.strategies
    assert len({s.name for s in answer.strategies}) == len(answer.strategies)
    for strategy in answer.strategies:
        assert strategy.description
        for name, param in strategy.params.items():
            if param.type == "bool":
                assert isinstance(param.default, bool), name
                continue
            assert not isinstance(param.default, bool), name
            assert param.min is not None, name
            assert param.max is not None, name
            assert param.min <= param.default <= param.max, (strategy.name, name)
            if param.type == "int":
                wire = raw[strategy.name][name]
                for key in ("default", "min", "max"):
                    assert isinstance(wire[key], int), (strategy.name, name, key, wire[key])
