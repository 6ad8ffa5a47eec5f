"""Production market reads on a real PostgreSQL and Redis: the repository's queries (SQL
aggregation included), the Redis read-through cache, and the same answers as the mock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.to_thread
import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.cache import RedisLink, create_redis
from backend.db.cache import market_key
from backend.db.session import create_engine
from backend.market.history import PgHistory, decode_bars, encode_bars
from backend.market.repositories import MarketRepository
from contract.errors import DependencyDown
from contract.reads import HistoryReads
from contract.types import HealthChecks
from market import calendar
from market.calendar import DEFAULT_ASOF
from market.history import daily_history, intraday_history
from market.indicators import INDICATOR_NAMES, compute_indicators
from mock_backend.history import GeneratedHistory
from ops import databases
from tests.backend.stores import SEED, fill, fresh_database

pytestmark = pytest.mark.anyio
SYMBOLS = ("AAPL", "BRK-B", "SPY")
CLOCK = 1_795_300_000.0  # a fixed "now": quotes and timestamps are then comparable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def market_url(postgres_server_url: str) -> Iterator[str]:
    url, name = fresh_database(postgres_server_url)
    fill(url, SYMBOLS)
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture
async def repository(market_url: str) -> AsyncIterator[MarketRepository]:
    engine = create_engine(market_url, pool_size=2)
    try:
        yield MarketRepository(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    link = RedisLink(create_redis(redis_url))
    try:
        yield link
    finally:
        await link.close()


async def _ok_checks() -> HealthChecks:
    return HealthChecks(database="ok", cache="ok", feed="n/a")


def _same_bars(left: object, right: object) -> None:
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


async def test_the_stored_series_comes_back_exactly(repository: MarketRepository) -> None:
    _same_bars(await repository.bars("SPY", "1d"), daily_history(SEED, "SPY", DEFAULT_ASOF))
    _same_bars(await repository.bars("BRK-B", "5m"), intraday_history(SEED, "BRK-B", DEFAULT_ASOF))
    assert len(await repository.bars("MSFT", "1d")) == 0, "a symbol never loaded has no bars"
    assert await repository.symbols() == sorted(SYMBOLS)
    run = await repository.latest_run()
    assert run is not None
    assert (run.source, run.seed, run.asof) == ("synthetic", SEED, DEFAULT_ASOF)


@pytest.mark.parametrize("interval", ["15m", "30m", "1h", "4h", "1wk", "1mo"])
async def test_sql_aggregation_equals_the_calendar_rules(
    repository: MarketRepository, interval: str
) -> None:
    for symbol in ("SPY", "BRK-B"):
        base = "5m" if calendar.base_interval(interval) == "5m" else "1d"
        stored = await repository.bars(symbol, base)  # type: ignore[arg-type]
        expected = calendar.aggregate(stored, interval)
        aggregated = await repository.aggregated(symbol, interval)
        assert len(aggregated) == len(expected) > 0
        _same_bars(aggregated, expected)


async def test_stored_indicators_are_the_ones_the_reads_compute(
    repository: MarketRepository,
) -> None:
    times, stored = await repository.indicators("AAPL", "1d")
    daily = daily_history(SEED, "AAPL", DEFAULT_ASOF)
    computed = compute_indicators(daily)
    np.testing.assert_array_equal(times, daily.time)
    for name in INDICATOR_NAMES:
        np.testing.assert_array_equal(getattr(stored, name), getattr(computed, name), name)


def test_encoded_bars_round_trip_and_refuse_garbage() -> None:
    bars = daily_history(SEED, "SPY", DEFAULT_ASOF)
    _same_bars(decode_bars(encode_bars(bars)), bars)
    assert decode_bars(b"not bars") is None
    assert decode_bars(encode_bars(bars)[:-8]) is None


async def test_production_reads_answer_exactly_as_the_mock(
    repository: MarketRepository, link: RedisLink
) -> None:
    history = PgHistory(repository, link, seed=SEED, clock=lambda: CLOCK)
    await history.refresh()
    production = HistoryReads(history, "production", _ok_checks, clock=lambda: CLOCK)
    reference = GeneratedHistory(SEED, DEFAULT_ASOF, feed=False)
    mock = HistoryReads(reference, "mock", _ok_checks, clock=lambda: CLOCK)

    assert [item.symbol for item in (await production.symbols()).symbols] == sorted(SYMBOLS)
    assert history.data_info() == reference.data_info()
    for symbol, period, interval in [
        ("SPY", "1y", "1d"),
        ("SPY", "max", "1mo"),
        ("BRK-B", "5d", "4h"),
        ("AAPL", "60d", "30m"),
        ("SPY", "1h", "5m"),
        ("AAPL", "ytd", "1wk"),
    ]:
        assert await production.historical(symbol, period, interval) == await mock.historical(
            symbol, period, interval
        )
        assert await production.indicators(symbol, period, interval) == await mock.indicators(
            symbol, period, interval
        )
    for timeframe in ("1d", "1h", "5m"):
        assert await production.symbol_signals("SPY", timeframe) == await mock.symbol_signals(
            "SPY", timeframe
        )
    assert await production.quote("SPY") == await mock.quote("SPY")
    signals = await production.signals(None, "1d", 50, 0)
    assert [s.symbol for s in signals.signals] == [
        s.symbol for s in (await mock.signals(list(SYMBOLS), "1d", 50, 0)).signals
    ]


async def test_reads_fill_redis_and_a_fresh_process_reads_from_it(
    repository: MarketRepository, link: RedisLink, market_url: str
) -> None:
    pattern = market_key("AAPL", "bars", "1d*")
    for stale in [key async for key in link.client.scan_iter(match=pattern)]:
        await link.client.delete(stale)
    first = PgHistory(repository, link, ttl_seconds=120)
    await first.refresh()
    daily = await first.bars("AAPL", "1d")
    keys = [key async for key in link.client.scan_iter(match=pattern)]
    assert len(keys) == 1, "the first read stored the series in Redis"
    ttl = await link.client.ttl(keys[0])
    assert 0 < ttl <= 120

    class NoDatabase(MarketRepository):
        async def bars(self, symbol: str, interval: str) -> object:  # type: ignore[override]
            raise AssertionError("read PostgreSQL although Redis holds the series")

    engine = create_engine(market_url, pool_size=1)
    try:
        second = PgHistory(NoDatabase(engine), link)
        await second.refresh()
        _same_bars(await second.bars("AAPL", "1d"), daily)
    finally:
        await engine.dispose()


async def test_without_redis_reads_come_from_postgresql(repository: MarketRepository) -> None:
    dead = RedisLink(create_redis("redis://127.0.0.1:9/0"))  # nothing listens on port 9
    try:
        history = PgHistory(repository, dead)
        await history.refresh()
        _same_bars(await history.bars("SPY", "1d"), daily_history(SEED, "SPY", DEFAULT_ASOF))
        assert not dead.up
    finally:
        await dead.close()


async def test_without_postgresql_the_cached_series_still_answers(
    market_url: str, link: RedisLink
) -> None:
    class Switchable(MarketRepository):
        """A repository whose engine the test swaps for one pointing at a dead server."""

        def kill(self, engine: AsyncEngine) -> None:
            self._engine = engine

    live = create_engine(market_url, pool_size=1)
    repository = Switchable(live)
    history = PgHistory(repository, link)
    await history.refresh()
    spy = await history.bars("SPY", "1d")
    for key in [k async for k in link.client.scan_iter(match=market_key("SPY", "bars", "5m*"))]:
        await link.client.delete(key)  # cached by an earlier test: this one needs it uncached
    await live.dispose()
    dead = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", timeout_seconds=1)
    repository.kill(dead)
    try:
        _same_bars(await history.bars("SPY", "1d"), spy)  # process memory
        with pytest.raises(DependencyDown, match="database"):
            await history.bars("SPY", "5m")  # in no cache: needs the database
        with pytest.raises(DependencyDown):
            await history.refresh()
        assert [item.symbol for item in history.listings()] == sorted(SYMBOLS)
    finally:
        await dead.dispose()


async def test_a_new_load_run_is_a_new_data_version(
    postgres_server_url: str, link: RedisLink
) -> None:
    url, name = await anyio.to_thread.run_sync(fresh_database, postgres_server_url)
    engine = create_engine(url, pool_size=1)
    try:
        await anyio.to_thread.run_sync(fill, url, ("SPY",))
        history = PgHistory(MarketRepository(engine), link)
        await history.refresh()
        before = history.version
        await history.bars("SPY", "1d")
        assert await history.refresh() is False, "nothing changed"
        run_id = await anyio.to_thread.run_sync(fill, url, ("MSFT",))
        assert await history.refresh() is True
        assert history.version == run_id != before
        assert [item.symbol for item in history.listings()] == ["MSFT", "SPY"]
        assert len(await history.bars("MSFT", "1d")) > 0
    finally:
        await engine.dispose()
        await anyio.to_thread.run_sync(databases.drop_database, postgres_server_url, name)
