"""Health of the production backend's dependencies, as `GET /api/v1/health` reports them.

database: PostgreSQL answers `SELECT 1` (down → the backend says `down`, HTTP 503);
cache: Redis answers PING (down → `degraded`: answers come from PostgreSQL);
feed: a quote feed ticked recently (`n/a` when QUOTE_FEED=off).
Each probe has a short deadline, so a hung dependency cannot hang the health check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.cache import RedisLink
from contract.types import HealthChecks

State = Literal["ok", "down", "n/a"]
PROBE_SECONDS = 2.0

log = logging.getLogger("backend.health")


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
        self._states: dict[str, State] = {}

    def _note(self, check: str, state: State, error: BaseException | None = None) -> State:
        """Log a check's change of state, once per change, with the reason it failed."""
        if self._states.get(check, "ok") != state:
            if state == "down":
                reason = "" if error is None else f": {type(error).__name__}: {error}"
                log.warning("health: %s is down%s", check, reason, exc_info=error)
            else:
                log.info("health: %s is %s again", check, state)
        self._states[check] = state
        return state

    async def database(self) -> State:
        try:
            async with asyncio.timeout(self._deadline), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:  # any failure to answer is "down"
            return self._note("database", "down", error)
        return self._note("database", "ok")

    async def cache(self) -> State:
        try:
            async with asyncio.timeout(self._deadline):
                if await self._link.ping():
                    return self._note("cache", "ok")
                return self._note("cache", "down", self._link.last_error)
        except TimeoutError as error:
            return self._note("cache", "down", error)

    def feed(self) -> State:
        if self._feed_fresh is None:
            return "n/a"
        if self._feed_fresh():
            return self._note("feed", "ok")
        return self._note("feed", "down", None)

    async def checks(self) -> HealthChecks:
        database, cache = await asyncio.gather(self.database(), self.cache())
        return HealthChecks(database=database, cache=cache, feed=self.feed())
