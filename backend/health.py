"""Health of the production backend's dependencies, as `GET /api/v1/health` reports them.

database: PostgreSQL answers `SELECT 1` (down → the backend says `down`, HTTP 503);
cache: Redis answers PING (down → `degraded`: answers come from PostgreSQL);
feed: a quote feed ticked recently (`n/a` when QUOTE_FEED=off).
Each probe has a short deadline, so a hung dependency cannot hang the health check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.cache import RedisLink
from contract.types import HealthChecks

State = Literal["ok", "down", "n/a"]
PROBE_SECONDS = 2.0


class HealthProbe:
    """Runs the three checks concurrently; `feed_fresh` is None when no feed runs."""

    def __init__(
        self,
        engine: AsyncEngine,
        link: RedisLink,
        feed_fresh: Callable[[], bool] | None,
        deadline: float = PROBE_SECONDS,
    ) -> None:
        self._engine = engine
        self._link = link
        self._feed_fresh = feed_fresh
        self._deadline = deadline

    async def database(self) -> State:
        try:
            async with asyncio.timeout(self._deadline), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure to answer is "down"; the reason is in the server's log
            return "down"
        return "ok"

    async def cache(self) -> State:
        try:
            async with asyncio.timeout(self._deadline):
                return "ok" if await self._link.ping() else "down"
        except TimeoutError:
            return "down"

    def feed(self) -> State:
        if self._feed_fresh is None:
            return "n/a"
        return "ok" if self._feed_fresh() else "down"

    async def checks(self) -> HealthChecks:
        database, cache = await asyncio.gather(self.database(), self.cache())
        return HealthChecks(database=database, cache=cache, feed=self.feed())
