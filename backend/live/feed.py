"""The live quote feed: one publisher for the whole deployment, latest quotes in Redis.

Every worker process runs a `QuoteFeed`. They elect one leader with a Redis lock (SET NX PX with
a token of their own, renewed each tick by a compare-and-set script); a leader that dies stops
renewing, its lock expires, and a follower takes over within `lock_ttl`. The leader asks the
provider for prices once per tick, writes them to the hash `quotes:latest` (symbol -> price and
time), from which every worker answers quotes, and publishes a `market_data` event for each
symbol whose price moved. Redis down: the feed keeps trying quietly and resumes when it answers.

Providers: the default `SimulatedProvider` moves prices around the last stored close with
`market.feed.live_price`, the function the mock uses, so both show the same price in the same
second. A real provider plugs in by implementing `QuoteProvider.prices` and passing it as
`QuoteFeed(..., provider=...)`: for instance a client of a vendor's streaming API that keeps the
last trade of each symbol in memory (a background task of its own) and returns those. Only the
leader calls it, so a vendor connection limit is spent once per deployment, not once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract.ports import LiveEvent
from contract.types import Quote
from market.calendar import iso_ms
from market.feed import live_price

log = logging.getLogger("backend.live.feed")

LOCK_KEY = "quotes:feed:leader"
LATEST_KEY = "quotes:latest"
TICK_KEY = "quotes:tick"

REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)

# Extend the lock only while we still hold it: a leader that lost it (expired while paused)
# must never extend the new leader's lock.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LatestQuote(msgspec.Struct, frozen=True):
    """A value of the `quotes:latest` hash: the price and the epoch time of its tick."""

    price: float
    time: float


_latest_decoder = msgspec.json.Decoder(LatestQuote)


class QuoteProvider(Protocol):
    """Where live prices come from; only the feed's leader calls it, once per tick."""

    async def prices(self, last_closes: Mapping[str, float], at: float) -> Mapping[str, float]:
        """The latest price of each served symbol at epoch time `at`.

        `last_closes` holds the served symbols and their last stored close (a sanity anchor for a
        real provider). A symbol without a price is left out; it keeps its previous quote.
        """
        ...


class SimulatedProvider:
    """Prices around the last close, a pure function of (seed, symbol, close, second)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    async def prices(self, last_closes: Mapping[str, float], at: float) -> Mapping[str, float]:
        return {
            symbol: live_price(self.seed, symbol, close, at)
            for symbol, close in last_closes.items()
        }


class QuoteFeed:
    """The live feed of one worker process; exactly one feed of the deployment leads."""

    def __init__(
        self,
        redis: Redis,
        last_closes: Callable[[], Awaitable[dict[str, float]]],
        seed: int,
        publish: Callable[[LiveEvent], Awaitable[None]],
        quote_for: Callable[[str, float], Awaitable[Quote]] | None = None,
        tick_seconds: float = 1.0,
        lock_ttl: float = 5.0,
        *,
        provider: QuoteProvider | None = None,
        listened: Callable[[Sequence[str]], Awaitable[set[str]]] | None = None,
        closes_refresh_seconds: float = 60.0,
        data_version: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        if lock_ttl <= tick_seconds:
            raise ValueError("lock_ttl must exceed tick_seconds: the leader renews once a tick")
        self._redis = redis
        self._last_closes = last_closes
        self._publish = publish
        self._quote_for = quote_for
        self._listened = listened
        self._provider: QuoteProvider = provider or SimulatedProvider(seed)
        self._tick = tick_seconds
        self._ttl_ms = max(1, round(lock_ttl * 1000))
        self._closes_refresh = closes_refresh_seconds
        self._data_version = data_version
        self._clock = clock
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._leader = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._created = clock()
        self._last_tick: float | None = None
        self._closes: dict[str, float] = {}
        self._closes_at = float("-inf")
        self._closes_failing = False
        self._closes_version: str | None = None
        self._previous: dict[str, float] = {}
        self.stale_after = 2 * lock_ttl + 2 * tick_seconds
        self.ticks = 0
        self.pushes = 0
        self.redis_failures = 0
        self.leaderships = 0

    # -- what the app reads ---------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this process publishes the quotes now."""
        return self._leader

    @property
    def lag_seconds(self) -> float:
        """Seconds since the last tick any leader wrote (as this worker last saw it)."""
        return max(0.0, self._clock() - (self._last_tick or self._created))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def latest(self, symbol: str) -> float | None:
        """The latest live price of `symbol` from Redis; None if none is fresh or Redis is down."""
        try:
            raw = await self._redis.hget(LATEST_KEY, symbol)
        except REDIS_DOWN:
            return None
        return self._fresh(raw)

    async def latest_many(self, symbols: Sequence[str]) -> dict[str, float]:
        """The fresh latest prices of `symbols` in one round trip (missing ones left out)."""
        if not symbols:
            return {}
        try:
            values = await self._redis.hmget(LATEST_KEY, list(symbols))
        except REDIS_DOWN:
            return {}
        found: dict[str, float] = {}
        for symbol, raw in zip(symbols, values, strict=True):
            price = self._fresh(raw)
            if price is not None:
                found[symbol] = price
        return found

    def _fresh(self, raw: bytes | str | None) -> float | None:
        if raw is None:
            return None
        try:
            quote = _latest_decoder.decode(raw)
        except msgspec.DecodeError:
            return None
        if self._clock() - quote.time > self.stale_after:
            return None  # no feed has ticked for a while: the caller falls back to the close
        return quote.price

    async def leader(self) -> str | None:
        """The token of the feed holding the lock now, if any."""
        value = await self._redis.get(LOCK_KEY)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="quote-feed")

    async def stop(self) -> None:
        """Stop ticking; a leader releases the lock so that a follower takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            task.cancel()
            # A cancel can be lost inside a library (a timeout racing it turns it into a
            # TimeoutError on Python 3.11); the flag ends the loop anyway, and we ask again.
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                task.cancel()
            if not task.cancelled() and task.exception() is not None:
                log.error("quote feed ended with an error", exc_info=task.exception())
        if self._leader:
            self._leader = False
            with contextlib.suppress(*REDIS_DOWN):
                await self._release(keys=[LOCK_KEY], args=[self.token])

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                wait = await self._step()
                if failures:
                    log.info("quote feed: Redis answers again after %d failed attempts", failures)
                failures = 0
            except REDIS_DOWN as exc:
                # Without Redis we cannot prove we hold the lock: stop publishing until it answers.
                self._leader = False
                failures += 1
                self.redis_failures += 1
                if failures == 1:
                    log.warning("quote feed: Redis does not answer (%s); retrying quietly", exc)
                wait = min(self._tick * failures, max(self._tick, 2.0))
            except Exception:  # a failing callback must not stop the feed
                log.exception("quote feed: a tick failed")
                wait = self._tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    def _until_next_tick(self) -> float:
        # Tick just after each boundary, when a new second's price exists.
        return self._tick - (self._clock() % self._tick) + 0.002

    async def _step(self) -> float:
        if self._leader and not await self._renew(keys=[LOCK_KEY], args=[self.token, self._ttl_ms]):
            self._leader = False
            log.warning("quote feed: lost the lock; another worker leads")
        if not self._leader and await self._redis.set(
            LOCK_KEY, self.token, nx=True, px=self._ttl_ms
        ):
            self._leader = True
            self.leaderships += 1
            log.info("quote feed: this worker leads (%s)", self.token)
        if self._leader:
            await self._publish_tick(self._clock())
            return self._until_next_tick()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(TICK_KEY)
            pipe.pttl(LOCK_KEY)
            last_tick, remaining = await pipe.execute()
        if last_tick is not None:
            self._last_tick = float(last_tick)
        wait = self._until_next_tick()
        if isinstance(remaining, int) and remaining > 0:
            # Wake the moment a dead leader's lock expires: takeover within lock_ttl.
            wait = min(wait, remaining / 1000 + 0.001)
        elif remaining == -2:
            wait = min(wait, 0.01)  # released between our SET and PTTL: try again now
        return wait

    async def _current_closes(self, now: float) -> dict[str, float]:
        # A new load changes the closes at once: follow the data version, not only the clock.
        version = None if self._data_version is None else self._data_version()
        stale = now - self._closes_at >= self._closes_refresh or version != self._closes_version
        if stale or not self._closes:
            try:
                closes = await self._last_closes()
            except Exception as exc:  # the database may be down: keep what we have
                if not self._closes_failing:
                    log.warning("quote feed: last closes unavailable (%s); keeping the old", exc)
                self._closes_failing = True
            else:
                self._closes_failing = False
                self._closes, self._closes_at = dict(closes), now
                self._closes_version = version
        return self._closes

    async def _publish_tick(self, now: float) -> None:
        closes = await self._current_closes(now)
        if not closes:
            return
        prices = {
            symbol: float(price)
            for symbol, price in (await self._provider.prices(closes, now)).items()
        }
        if not prices:
            return
        values = {
            symbol: msgspec.json.encode(LatestQuote(price, now)) for symbol, price in prices.items()
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(LATEST_KEY, mapping=values)  # type: ignore[arg-type]
            pipe.set(TICK_KEY, repr(now))
            await pipe.execute()
        self._last_tick = now
        self.ticks += 1
        moved = sorted(s for s, price in prices.items() if self._previous.get(s) != price)
        self._previous.update(prices)
        if moved and self._listened is not None:
            wanted = await self._listened(moved)
            moved = [symbol for symbol in moved if symbol in wanted]
        for symbol in moved:
            price = prices[symbol]
            if self._quote_for is not None:
                try:
                    data: object = await self._quote_for(symbol, price)
                except Exception:
                    log.warning("quote feed: no quote for %s", symbol, exc_info=True)
                    continue
            else:
                data = {"symbol": symbol, "price": price, "timestamp": iso_ms(now)}
            await self._publish(LiveEvent("market_data", "market_data", symbol, data))
            self.pushes += 1
