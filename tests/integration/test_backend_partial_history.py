"""Production reads over histories a CSV load can leave behind, and over reloads: a symbol stored
at 5 minutes only is not served, a symbol without the history a list needs is skipped rather
than failing the list, and a reload is answered at once even when its last bar is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.to_thread
import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from backend.cache import RedisLink, create_redis
from backend.db.session import create_engine
from backend.market.history import PgHistory, listing_for
from backend.market.repositories import MarketRepository
from contract.errors import FieldError
from contract.ports import BaseInterval
from contract.reads import HistoryReads
from contract.types import BacktestCreate, DataInfo, HealthChecks
from contract.universe import Listing
from market.bars import Bars
from ops import databases
from tests.backend.stores import fill, fresh_database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def partial_url(postgres_server_url: str) -> Iterator[str]:
    """SPY at both intervals, DAILY at 1d only, FIVE at 5m only (as a CSV load may leave)."""
    url, name = fresh_database(postgres_server_url, "cutover_partial")
    fill(url, ("SPY",))
    fill(url, ("DAILY",), intervals=("1d",))
    fill(url, ("FIVE",), intervals=("5m",))
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    link = RedisLink(create_redis(redis_url))
    try:
        yield link
    finally:
        await link.close()


async def _ok_checks() -> HealthChecks:
    return HealthChecks(database="ok", cache="ok", feed="n/a")


class EveryStoredSymbol:
    """A history that serves every stored symbol, daily bars or not: what the reads must survive
    whatever a backend chooses to list."""

    def __init__(self, history: PgHistory, repository: MarketRepository) -> None:
        self._history = history
        self._repository = repository

    def listings(self) -> list[Listing]:
        return sorted([*self._history.listings(), listing_for("FIVE")], key=lambda x: x.symbol)

    def data_info(self) -> DataInfo:
        return self._history.data_info()

    def data_version(self) -> str:
        return self._history.data_version()

    async def bars(self, symbol: str, base: BaseInterval) -> Bars:
        return await self._repository.bars(symbol, base)

    async def live_price(self, symbol: str) -> float | None:
        return None


async def test_a_symbol_with_only_five_minute_bars_breaks_nothing(
    partial_url: str, link: RedisLink
) -> None:
    engine = create_engine(partial_url, pool_size=2)
    try:
        repository = MarketRepository(engine)
        history = PgHistory(repository, link)
        await history.refresh()
        assert [item.symbol for item in history.listings()] == ["DAILY", "SPY"], (
            "only symbols with daily bars are served"
        )
        reads = HistoryReads(history, "production", _ok_checks)
        await reads.warm()
        hourly = await reads.signals(None, "1h", 50, 0)
        assert [s.symbol for s in hourly.signals] == ["SPY"], "DAILY has no 5m bars: skipped"
        daily = await reads.signals(None, "1d", 50, 0)
        assert sorted(s.symbol for s in daily.signals) == ["DAILY", "SPY"]

        every = HistoryReads(EveryStoredSymbol(history, repository), "production", _ok_checks)
        await every.warm()
        assert sorted(s.symbol for s in (await every.signals(None, "1d", 50, 0)).signals) == [
            "DAILY",
            "SPY",
        ]
        assert sorted(s.symbol for s in (await every.signals(None, "5m", 50, 0)).signals) == [
            "FIVE",
            "SPY",
        ]
        picked = await every.opportunities(10)
        assert "FIVE" not in {item.symbol for item in picked.opportunities}
        assert (await every.agents()).agents, "agents are rated on the symbols with daily bars"
        request = BacktestCreate(
            symbol="FIVE", strategy="sma_crossover", start="2024-01-02", end="2024-06-28"
        )
        with pytest.raises(FieldError) as refused:
            await every.prepare_backtest(request)
        assert refused.value.extra[0]["key"] == "symbol"  # type: ignore[index]
        assert "no daily history" in refused.value.extra[0]["message"]  # type: ignore[index]
    finally:
        await engine.dispose()


async def _reload_with_a_changed_middle_bar(url: str) -> tuple[int, float]:
    """Double one mid-history daily close of SPY and record a new completed load run, as a
    corrected CSV reloaded over the old one would: the last bar stays as it was."""
    connection = await asyncpg.connect(databases.libpq_url(url))
    try:
        moment = await connection.fetchval(
            "SELECT time FROM bars WHERE symbol = 'SPY' AND interval = '1d' "
            "ORDER BY time DESC OFFSET 5 LIMIT 1"
        )
        close = await connection.fetchval(
            "UPDATE bars SET close = close * 2, high = greatest(high, close * 2) "
            "WHERE symbol = 'SPY' AND interval = '1d' AND time = $1 RETURNING close",
            moment,
        )
        await connection.execute(
            "INSERT INTO load_runs (status, source, seed, asof, finished_at, adjusted, params, "
            "counts, checksums, problems) SELECT 'done', source, seed, asof, now(), adjusted, "
            "params, counts, checksums, problems FROM load_runs ORDER BY id DESC LIMIT 1"
        )
        return int(moment.timestamp()), float(close)
    finally:
        await connection.close()


async def test_a_reload_with_the_same_last_bar_is_answered_without_a_restart(
    postgres_server_url: str, link: RedisLink
) -> None:
    url, name = await anyio.to_thread.run_sync(fresh_database, postgres_server_url)
    engine = create_engine(url, pool_size=2)
    try:
        await anyio.to_thread.run_sync(fill, url, ("SPY",))
        history = PgHistory(MarketRepository(engine), link)
        await history.refresh()
        reads = HistoryReads(history, "production", _ok_checks)
        before = await reads.historical("SPY", "1mo", "1d")
        before_sma = await reads.indicators("SPY", "1mo", "1d")
        moment, close = await _reload_with_a_changed_middle_bar(url)
        assert await history.refresh() is True, "the data version moved"
        after = await reads.historical("SPY", "1mo", "1d")
        assert after.data[-1] == before.data[-1], "the last bar is unchanged"
        changed = next(candle for candle in after.data if candle.time == moment)
        assert changed.close == close
        assert changed != next(candle for candle in before.data if candle.time == moment)
        after_sma = await reads.indicators("SPY", "1mo", "1d")
        assert after_sma.data[-1] != before_sma.data[-1], "indicators over the new bars"
    finally:
        await engine.dispose()
        await anyio.to_thread.run_sync(databases.drop_database, postgres_server_url, name)
