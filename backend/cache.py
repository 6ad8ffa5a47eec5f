"""The backend's link to Redis: one client per process and a breaker around it.

Redis holds caches, quotes, limits and the bus, never the only copy of anything, so a dead Redis
must cost a request nothing: after a failure the link is marked down and callers skip Redis for a
moment (answering from PostgreSQL, failing the limiter open) instead of waiting on it again.
Each change between up and down is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("backend.cache")
T = TypeVar("T")

# How long Redis is skipped after a failure before the next call tries it again.
RETRY_AFTER_SECONDS = 1.0


def create_redis(url: str, timeout: float = 0.5) -> aioredis.Redis:
    """A client that gives up fast: a slow cache is worse than no cache."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry_on_timeout=False,
    )
    return client


class RedisDownError(Exception):
    """Redis did not answer (or is being skipped after a recent failure)."""


class RedisLink:
    """A Redis client with a breaker: `call` runs a command unless Redis failed a moment ago."""

    def __init__(
        self,
        client: aioredis.Redis,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self.client = client
        self._clock = clock
        self._retry_after = retry_after
        self._down_until = 0.0
        self.up = True
        self.last_error: BaseException | None = None  # why Redis last failed (for health's log)

    @property
    def skipping(self) -> bool:
        return not self.up and self._clock() < self._down_until

    def mark_down(self, error: BaseException, what: str) -> None:
        self._down_until = self._clock() + self._retry_after
        self.last_error = error
        if self.up:
            self.up = False
            log.warning("redis does not answer (%s: %s): %s", type(error).__name__, error, what)

    def mark_up(self) -> None:
        if not self.up:
            self.up = True
            log.warning("redis answers again")

    async def call(self, command: Callable[[aioredis.Redis], Awaitable[T]], what: str) -> T:
        """Run `command`; RedisDownError when Redis fails now or failed a moment ago."""
        if self.skipping:
            raise RedisDownError(what)
        try:
            result = await command(self.client)
        except (RedisError, OSError, TimeoutError) as error:
            self.mark_down(error, what)
            raise RedisDownError(what) from error
        self.mark_up()
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (ignores the breaker: health must see recovery)."""
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as error:
            self.mark_down(error, "ping")
            return False
        self.mark_up()
        return True

    async def close(self) -> None:
        await self.client.aclose()
