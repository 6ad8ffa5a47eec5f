"""Assembles the mock: in-memory adapters for every port, plugged into the contract's app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from litestar import Litestar

from contract.app import build_app
from contract.faults import FaultState
from contract.ports import Limits, Services
from contract.reads import HistoryReads
from contract.types import HealthChecks
from mock_backend.backtests import MemoryBacktests
from mock_backend.history import GeneratedHistory
from mock_backend.limiter import MemoryLimiter
from mock_backend.live import MemoryLive
from mock_backend.settings import MockSettings
from mock_backend.users import MemoryUsers
from mock_backend.watchlists import MemoryWatchlists


@dataclass(slots=True)
class MockParts:
    """The mock's stores, kept reachable for the admin side (faults, rebuilds)."""

    app: Litestar
    users: MemoryUsers
    watchlists: MemoryWatchlists
    backtests: MemoryBacktests
    live: MemoryLive
    faults: FaultState


def create_app(settings: MockSettings) -> MockParts:
    history = GeneratedHistory(settings.seed, settings.asof, settings.quote_feed)

    async def checks() -> HealthChecks:
        return HealthChecks(
            database="n/a", cache="n/a", feed="ok" if settings.quote_feed else "n/a"
        )

    reads = HistoryReads(history, "mock", checks)
    watchlists = MemoryWatchlists({item.symbol for item in history.listings()})
    backtests = MemoryBacktests(reads)

    async def forget(user_id: str) -> None:
        await watchlists.delete_user(user_id)
        await backtests.delete_user(user_id)

    users = MemoryUsers(settings.secret_key, on_delete=forget)
    live = MemoryLive(reads, feed=settings.quote_feed)
    services = Services(
        backend="mock",
        market=reads,
        signals=reads,
        users=users,
        watchlists=watchlists,
        backtests=backtests,
        live=live,
        limiter=MemoryLimiter(),
        secret_key=settings.secret_key,
        limits=Limits(
            per_minute=settings.rate_limit_per_minute,
            login_per_account=settings.login_limit_per_account,
            login_per_address=settings.login_limit_per_address,
        ),
        trusted_proxies=frozenset(settings.trusted_proxies),
        ws_max_subscriptions=settings.ws_max_subscriptions,
    )

    warming: set[asyncio.Task[None]] = set()

    async def start() -> None:
        await users.ensure_demo(settings.demo_password)
        await live.start()
        # In the background: the server answers at once, first reads get faster within seconds.
        task = asyncio.create_task(reads.warm())
        warming.add(task)
        task.add_done_callback(warming.discard)

    app = build_app(
        services,
        cors_origins=settings.cors_origins,
        on_startup=[start],
        on_shutdown=[live.stop],
    )
    return MockParts(app, users, watchlists, backtests, live, settings.faults)
