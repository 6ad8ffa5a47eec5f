"""The production `LivePort`: WebSocket pushes through Litestar's channels on Redis pub/sub.

Each worker process holds one `ChannelsLive` and adds its `.plugin` to the app. A publish on any
worker goes through Redis, so it reaches every session subscribed to that (channel, symbol) on
every worker. Each session keeps at most `max_backlog` undelivered events and drops the oldest
beyond that: a slow client loses stale quotes, it never grows the worker's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.channels.subscriber import Subscriber
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract.ports import LiveEvent

log = logging.getLogger("backend.live.channels")

# What a Redis outage looks like from redis-py: its own errors, or the socket's.
REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)
# Plus redis-py's RuntimeError when a pub/sub connection was never made (first connect failed).
_STREAM_DOWN: tuple[type[Exception], ...] = (*REDIS_DOWN, RuntimeError)


class _Envelope(msgspec.Struct, frozen=True):
    """A LiveEvent as it travels through Redis."""

    type: Literal["market_data", "signal"]
    channel: Literal["market_data", "signals"]
    symbol: str
    data: Any


_decoder = msgspec.json.Decoder(_Envelope)


def encode_event(event: LiveEvent) -> bytes:
    """The wire form of an event; `data` may be a msgspec Struct, a dict of them, or builtins."""
    return msgspec.json.encode(
        {"type": event.type, "channel": event.channel, "symbol": event.symbol, "data": event.data}
    )


def decode_event(payload: bytes) -> LiveEvent | None:
    """The event in a channel message, or None (logged) for a message that is not one."""
    try:
        envelope = _decoder.decode(payload)
    except msgspec.DecodeError:
        log.warning("dropped a malformed live message (%d bytes)", len(payload))
        return None
    return LiveEvent(envelope.type, envelope.channel, envelope.symbol, envelope.data)


class ResilientPubSubBackend(RedisChannelsPubSubBackend):
    """Litestar's Redis pub/sub backend, made to outlive a Redis outage.

    The stock backend's event stream ends on the first connection error, and with it every push
    of the worker until a restart. Here the stream waits and reconnects, subscriptions asked for
    while Redis was down are remembered, and all of them are renewed when Redis answers again.
    """

    def __init__(self, *, redis: Redis, retry_cap: float = 2.0) -> None:
        super().__init__(redis=redis)
        self._retry_cap = retry_cap
        self.outages = 0

    def _wanted(self) -> list[bytes]:
        return [
            name if isinstance(name, bytes) else str(name).encode()
            for name in self._pub_sub.channels
        ]

    async def subscribe(self, channels: Iterable[str]) -> None:
        names = list(channels)
        try:
            await super().subscribe(names)
        except REDIS_DOWN as exc:
            # Remember the wish: the stream subscribes to it when Redis answers again.
            self._pub_sub.channels.update(dict.fromkeys(name.encode() for name in names))
            self._has_subscribed.set()
            log.warning("Redis did not answer a subscribe (%s); it is renewed on reconnect", exc)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        names = list(channels)
        try:
            await super().unsubscribe(names)
        except REDIS_DOWN:
            # A lost connection holds no subscription: forgetting the name is enough.
            for name in names:
                self._pub_sub.channels.pop(name.encode(), None)

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        # The stock loop, plus reconnection; and it honours a cancel that a library turned into
        # a timeout (Python 3.11), or the plugin's shutdown would wait for this task forever.
        delay = 0.05
        broken = False
        while True:
            if _cancel_requested():
                raise asyncio.CancelledError
            try:
                if broken:
                    wanted = self._wanted()
                    if wanted:
                        # Connects if needed; redis-py also renews the old subscriptions then.
                        await self._pub_sub.subscribe(*wanted)
                    broken = False
                    delay = 0.05
                    log.info("live channels: Redis answers again, %d channels renewed", len(wanted))
                await self._has_subscribed.wait()
                message = await self._pub_sub.get_message(
                    ignore_subscribe_messages=True, timeout=self._stream_sleep_no_subscriptions
                )
            except _STREAM_DOWN as exc:
                if _cancel_requested():
                    raise asyncio.CancelledError from exc
                if not broken:
                    self.outages += 1
                    log.warning("live channels: Redis does not answer (%s); retrying", exc)
                broken = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_cap)
                continue
            if message is None:
                continue
            channel: str = message["channel"].decode()
            # A message may still arrive for a channel being unsubscribed: only live ones count.
            live = self._pub_sub.channels.keys() - self._pub_sub.pending_unsubscribe_channels
            if channel.encode() in live:
                yield channel, message["data"]


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class ChannelsSession:
    """One WebSocket connection's subscriptions, delivered in order with a bounded backlog."""

    def __init__(self, live: ChannelsLive) -> None:
        self._live = live
        self._subscribers: dict[str, Subscriber] = {}
        self._forwarders: dict[str, asyncio.Task[None]] = {}
        self._backlog: deque[bytes] = deque(maxlen=live.max_backlog)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    @property
    def backlog(self) -> int:
        """Events received and not yet taken by `events()` (never above `max_backlog`)."""
        return len(self._backlog)

    @property
    def channels(self) -> list[str]:
        """The Redis channel names this session listens to."""
        return sorted(self._subscribers)

    def subscriber_backlogs(self) -> list[int]:
        """Queue lengths of the channels plugin's subscribers of this session (each bounded)."""
        return [subscriber.qsize for subscriber in self._subscribers.values()]

    async def subscribe(self, channel: str, symbol: str) -> None:
        name = self._live.channel_name(channel, symbol)
        if self._closed or name in self._subscribers:
            return
        subscriber = await self._live.plugin.subscribe(name)
        self._subscribers[name] = subscriber
        self._forwarders[name] = asyncio.create_task(self._forward(subscriber))

    async def unsubscribe(self, channel: str, symbol: str) -> None:
        await self._drop(self._live.channel_name(channel, symbol))

    async def _drop(self, name: str) -> None:
        subscriber = self._subscribers.pop(name, None)
        if subscriber is None:
            return
        await self._live.plugin.unsubscribe(subscriber, name)
        forwarder = self._forwarders.pop(name, None)
        if forwarder is not None:
            forwarder.cancel()  # its stream has ended anyway; nothing to wait for

    async def _forward(self, subscriber: Subscriber) -> None:
        async for payload in subscriber.iter_events():
            if len(self._backlog) == self._backlog.maxlen:
                self.dropped += 1
            self._backlog.append(payload)  # a full deque drops its oldest (drop-left)
            self._ready.set()

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Events of every subscribed channel, oldest first, until `close()`."""
        while True:
            while self._backlog:
                event = decode_event(self._backlog.popleft())
                if event is not None:
                    yield event
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()

    def end(self) -> None:
        """End `events()` without touching Redis (the app is shutting down)."""
        self._closed = True
        for forwarder in self._forwarders.values():
            forwarder.cancel()
        self._live.sessions.discard(self)
        self._ready.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in list(self._subscribers):
            try:
                await self._drop(name)
            except _STREAM_DOWN:
                log.debug("unsubscribe of %s during close failed", name, exc_info=True)
        self._live.sessions.discard(self)
        self._ready.set()


class ChannelsLive:
    """The `LivePort` of one worker process: Litestar channels over Redis pub/sub.

    In the app: add `.plugin` to the app's plugins (its lifespan starts the subscription stream)
    and call `close()` on shutdown. Outside an app (scripts, tests): `async with ChannelsLive(...)`.
    Redis pub/sub ignores database numbers, so channel names carry a namespace: by default
    `dbN:` for a Redis URL selecting database N > 0, nothing for database 0.
    """

    def __init__(
        self, redis_url: str, max_backlog: int = 256, *, namespace: str | None = None
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.max_backlog = max_backlog
        self.redis = Redis.from_url(
            redis_url, socket_connect_timeout=2.0, socket_timeout=5.0, health_check_interval=15
        )
        if namespace is None:
            db = int(self.redis.connection_pool.connection_kwargs.get("db", 0) or 0)
            namespace = f"db{db}:" if db else ""
        self.namespace = namespace
        self.backend = ResilientPubSubBackend(redis=self.redis)
        self.plugin = ChannelsPlugin(
            backend=self.backend,
            arbitrary_channels_allowed=True,
            subscriber_max_backlog=max_backlog,
            subscriber_backlog_strategy="dropleft",
        )
        self.sessions: set[ChannelsSession] = set()
        self.published = 0
        self.failed_publishes = 0

    def channel_name(self, channel: str, symbol: str) -> str:
        """The Redis channel of (channel, symbol), e.g. `market_data:SPY`."""
        return f"{self.namespace}{channel}:{symbol}"

    async def open_session(self) -> ChannelsSession:
        session = ChannelsSession(self)
        self.sessions.add(session)
        return session

    async def publish(self, event: LiveEvent) -> None:
        """Send `event` to its channel on every worker; best effort while Redis is down.

        A push that cannot be sent is dropped (and counted): the next tick replaces it, and a
        caller such as a request handler must not fail because the bus is away.
        """
        payload = encode_event(event)
        try:
            await self.plugin.wait_published(
                payload, self.channel_name(event.channel, event.symbol)
            )
        except REDIS_DOWN as exc:
            self.failed_publishes += 1
            if self.failed_publishes == 1 or self.failed_publishes % 1000 == 0:
                log.warning("live push dropped, Redis does not answer (%s)", exc)
            return
        self.published += 1

    async def listened(self, channel: str, symbols: Sequence[str]) -> set[str]:
        """The symbols among `symbols` with at least one subscriber of `channel` on any worker."""
        if not symbols:
            return set()
        names = {self.channel_name(channel, symbol): symbol for symbol in symbols}
        counts = await self.redis.pubsub_numsub(*names)
        found: set[str] = set()
        for name, count in counts:
            text = name.decode() if isinstance(name, bytes) else str(name)
            if int(count) > 0 and text in names:
                found.add(names[text])
        return found

    async def close(self) -> None:
        """On shutdown, after the plugin has stopped: end the sessions, close the connections."""
        for session in list(self.sessions):
            session.end()
        await self.redis.aclose()

    async def __aenter__(self) -> ChannelsLive:
        await self.plugin.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for session in list(self.sessions):
            await session.close()
        await self.plugin.__aexit__(exc_type, exc, traceback)
        await self.redis.aclose()
