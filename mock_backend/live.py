"""The mock's live side: a ticking quote feed and in-process WebSocket fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from contract.ports import LiveEvent, MarketPort

log = logging.getLogger("mock_backend.live")
BACKLOG = 256  # per subscriber: a slow client loses its oldest pushes, memory stays bounded


class MemorySession:
    def __init__(self, hub: MemoryLive) -> None:
        self._hub = hub
        self.topics: set[tuple[str, str]] = set()
        self.queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(BACKLOG)

    async def subscribe(self, channel: str, symbol: str) -> None:
        self.topics.add((channel, symbol))

    async def unsubscribe(self, channel: str, symbol: str) -> None:
        self.topics.discard((channel, symbol))

    def offer(self, event: LiveEvent) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[LiveEvent]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        self._hub.sessions.discard(self)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class MemoryLive:
    """The `LivePort` of one process: every session of this process hears every publish."""

    def __init__(self, market: MarketPort, tick_seconds: float = 1.0, feed: bool = True) -> None:
        self._market = market
        self._tick = tick_seconds
        self._feed = feed
        self.sessions: set[MemorySession] = set()
        self._last: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def open_session(self) -> MemorySession:
        session = MemorySession(self)
        self.sessions.add(session)
        return session

    async def publish(self, event: LiveEvent) -> None:
        for session in list(self.sessions):
            if (event.channel, event.symbol) in session.topics:
                session.offer(event)

    async def start(self) -> None:
        if self._feed and self._task is None:
            self._task = asyncio.create_task(self._ticker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            wanted = {sym for s in self.sessions for ch, sym in s.topics if ch == "market_data"}
            for symbol in sorted(wanted):
                try:
                    quote = await self._market.quote(symbol)
                except Exception:  # a failed tick must not stop the feed
                    log.exception("quote tick for %s failed", symbol)
                    continue
                if self._last.get(symbol) != quote.price:
                    self._last[symbol] = quote.price
                    await self.publish(LiveEvent("market_data", "market_data", symbol, quote))
