"""Assembles the production backend: PostgreSQL and Redis adapters for every port, plugged into
the contract's app (`contract.app.build_app`), the same factory the mock uses.

`create_app(settings)` builds everything and connects to nothing: connections open on first use
and the background work (data version watch, demo user, quote feed, cache warm-up, metrics
sampling) starts with the app's lifespan. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from saq import Queue
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.backtests.queue import REDIS_DOWN, make_queue
from backend.backtests.service import QueuedBacktests
from backend.cache import RedisLink, create_redis
from backend.db.session import (
    DATABASE_EXCEPTIONS,
    create_engine,
    create_sessions,
    database_down_handler,
)
from backend.health import HealthProbe
from backend.live.channels import ChannelsLive
from backend.live.feed import QuoteFeed
from backend.market.history import PgHistory
from backend.market.repositories import MarketRepository
from backend.observability import FEED_LAG, QUEUE_DEPTH, worker_header
from backend.ratelimit import RedisLimiter
from backend.settings import Settings
from backend.signals.service import RecordingSignals
from backend.users.service import PgUsers
from backend.watchlists.service import PgWatchlists
from contract.app import build_app
from contract.errors import DependencyDown
from contract.ports import Limits, Services
from contract.reads import HistoryReads, to_struct
from contract.types import Quote
from market.feed import live_price
from market.quotes import build_quote

log = logging.getLogger("backend")

SAMPLE_SECONDS = 5.0
RETRY_SECONDS = 2.0


class DataSeededProvider:
    """The simulated quote provider, seeded by the loaded data's seed (else MARKET_SEED), so the
    feed moves the same prices as a mock started with that seed."""

    def __init__(self, history: PgHistory, fallback_seed: int) -> None:
        self._history = history
        self._fallback = fallback_seed

    async def prices(self, last_closes: Mapping[str, float], at: float) -> Mapping[str, float]:
        seed = self._history.data_info().seed
        seed = self._fallback if seed is None else seed
        return {sym: live_price(seed, sym, close, at) for sym, close in last_closes.items()}


@dataclass(slots=True)
class Production:
    """The parts of one worker's backend, reachable from `app.state.production` (tests, admin)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    link: RedisLink
    history: PgHistory
    reads: HistoryReads
    users: PgUsers
    limiter: RedisLimiter
    live: ChannelsLive
    backtests: QueuedBacktests
    queue: Queue
    feed: QuoteFeed | None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def _retry(what: str, attempt: Callable[[], Awaitable[object]]) -> None:
    """Run `attempt` until the database answers (a background task at start-up)."""
    while True:
        try:
            await attempt()
            return
        except DependencyDown:
            await asyncio.sleep(RETRY_SECONDS)
        except Exception:
            log.exception("%s failed", what)
            return


def create_app(settings: Settings, *, worker: str | None = None) -> Litestar:
    """The production app for `settings`; `worker` names this process in the X-Worker header
    (default: its pid)."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        timeout_seconds=settings.db_timeout_seconds,
    )
    sessions = create_sessions(engine)
    link = RedisLink(create_redis(settings.redis_url))
    feed_ref: list[QuoteFeed] = []

    async def latest(symbol: str) -> float | None:
        return await feed_ref[0].latest(symbol) if feed_ref else None

    history = PgHistory(
        MarketRepository(engine),
        link,
        ttl_seconds=settings.cache_ttl_seconds,
        latest_price=latest if settings.quote_feed else None,
        seed=settings.market_seed,
    )
    probe = HealthProbe(
        engine,
        link,
        (lambda: bool(feed_ref) and feed_ref[0].lag_seconds <= feed_ref[0].stale_after)
        if settings.quote_feed
        else None,
    )
    reads = HistoryReads(history, "production", probe.checks)
    channels = ChannelsLive(settings.redis_url, settings.ws_max_backlog)
    queue = make_queue(settings.redis_url)
    backtests = QueuedBacktests(sessions, queue, reads)
    users = PgUsers(sessions, settings.secret_key)
    limiter = RedisLimiter(link)
    feed: QuoteFeed | None = None
    if settings.quote_feed:

        async def last_closes() -> dict[str, float]:
            closes: dict[str, float] = {}
            for listing in history.listings():
                daily = await history.bars(listing.symbol, "1d")
                if len(daily):
                    closes[listing.symbol] = float(daily.close[-1])
            return closes

        async def quote_for(symbol: str, price: float) -> Quote:
            daily = await history.bars(symbol, "1d")
            return to_struct(build_quote(symbol, daily, price, time.time()), Quote)

        async def listened(symbols: Sequence[str]) -> set[str]:
            return await channels.listened("market_data", symbols)

        feed = QuoteFeed(
            link.client,
            last_closes,
            settings.market_seed,
            channels.publish,
            quote_for,
            provider=DataSeededProvider(history, settings.market_seed),
            listened=listened,
            data_version=history.data_version,
        )
        feed_ref.append(feed)
    parts = Production(
        settings=settings,
        engine=engine,
        sessions=sessions,
        link=link,
        history=history,
        reads=reads,
        users=users,
        limiter=limiter,
        live=channels,
        backtests=backtests,
        queue=queue,
        feed=feed,
    )
    services = Services(
        backend="production",
        market=reads,
        signals=RecordingSignals(reads, sessions),
        users=users,
        watchlists=PgWatchlists(sessions, lambda: {item.symbol for item in history.listings()}),
        backtests=backtests,
        live=channels,
        limiter=limiter,
        secret_key=settings.secret_key,
        limits=Limits(
            per_minute=settings.rate_limit_per_minute,
            login_per_account=settings.login_limit_per_account,
            login_per_address=settings.login_limit_per_address,
            login_window_seconds=settings.login_limit_window_seconds,
        ),
        trusted_proxies=frozenset(settings.trusted_proxies),
        ws_max_subscriptions=settings.ws_max_subscriptions,
    )

    async def sample_metrics() -> None:
        while True:
            if feed is not None:
                FEED_LAG.set(feed.lag_seconds)
            with contextlib.suppress(Exception):  # Redis down: keep the last figure
                QUEUE_DEPTH.set(await queue.count("queued"))
            await asyncio.sleep(SAMPLE_SECONDS)

    async def warm() -> None:
        try:
            await reads.warm()
        except DependencyDown:
            log.warning("cache warm-up skipped: the database does not answer")
        except Exception:
            log.exception("cache warm-up failed; reads compute on first use")

    async def start() -> None:
        try:
            await history.refresh()
        except DependencyDown:
            log.warning("the database does not answer at start-up; retrying in the background")
        parts.spawn(
            _retry("creating the demo user", lambda: users.ensure_demo(settings.demo_password)),
            "demo-user",
        )
        parts.spawn(history.watch(settings.data_poll_seconds), "data-version")
        parts.spawn(warm(), "warm-up")
        parts.spawn(sample_metrics(), "metrics")
        with contextlib.suppress(*REDIS_DOWN):  # Redis down: the queue connects on first use
            await queue.connect()
        if feed is not None:
            await feed.start()

    async def stop() -> None:
        for task in list(parts.tasks):
            task.cancel()
        await asyncio.gather(*parts.tasks, return_exceptions=True)
        if feed is not None:
            await feed.stop()
        await channels.close()
        with contextlib.suppress(*REDIS_DOWN):
            await queue.disconnect()
        await link.close()
        await engine.dispose()

    app = build_app(
        services,
        cors_origins=settings.cors_origins,
        on_startup=[start],
        on_shutdown=[stop],
        plugins=[channels.plugin],
        exception_handlers=dict.fromkeys(DATABASE_EXCEPTIONS, database_down_handler),
        before_send=[worker_header(worker or str(os.getpid()))],
    )
    app.state.production = parts
    return app
