"""Redis goes away and comes back: the feed and the WebSocket fan-out keep going, quietly, and
resume without a restart. These tests stop a Redis server, so they run one of their own."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from backend.live.channels import ChannelsLive
from backend.live.feed import QuoteFeed
from contract.ports import LiveEvent
from ops import embedded, services

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class OwnRedis:
    """A Redis server this test starts, stops and restarts on one port, by pid."""

    def __init__(self, directory: Path) -> None:
        self.port = services.free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [str(embedded.redis_server_bin()), "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if sync_redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except sync_redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"Redis on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def client(own_redis: OwnRedis) -> AsyncIterator[Redis]:
    connection = Redis.from_url(own_redis.url, socket_connect_timeout=1, socket_timeout=1)
    try:
        yield connection
    finally:
        await connection.aclose()


async def test_the_feed_survives_a_redis_outage_and_resumes(
    own_redis: OwnRedis, client: Redis
) -> None:
    async def closes() -> dict[str, float]:
        return {"SPY": 500.0}

    published: list[LiveEvent] = []

    async def publish(event: LiveEvent) -> None:
        published.append(event)

    feed = QuoteFeed(client, closes, 42, publish, tick_seconds=0.1, lock_ttl=0.5)
    await feed.start()
    try:
        await wait_for(lambda: feed.is_leader and feed.ticks > 0, 3)
        own_redis.stop()
        await wait_for(lambda: feed.redis_failures > 0, 5)
        await asyncio.sleep(1.0)
        assert feed.running, "no crash"
        assert not feed.is_leader, "without Redis it cannot prove it leads"
        assert await feed.latest("SPY") is None, "quotes fall back to the last close"
        ticks = feed.ticks
        own_redis.start()  # an empty Redis: the lock, the quotes, everything is gone
        await wait_for(lambda: feed.is_leader and feed.ticks > ticks, 10)
        assert await feed.latest("SPY") is not None
    finally:
        await feed.stop()


async def test_fan_out_survives_a_redis_outage_and_renews_subscriptions(
    own_redis: OwnRedis,
) -> None:
    async with ChannelsLive(own_redis.url) as live:
        session = await live.open_session()
        await session.subscribe("market_data", "SPY")
        events = session.events()
        await live.publish(LiveEvent("market_data", "market_data", "SPY", {"n": 1}))
        with anyio.fail_after(3):
            assert (await anext(events)).data == {"n": 1}

        own_redis.stop()
        await live.publish(LiveEvent("market_data", "market_data", "SPY", {"n": 2}))
        assert live.failed_publishes >= 1, "dropped and counted, not raised"
        await session.subscribe("market_data", "QQQ")  # asked while Redis is away
        await wait_for(lambda: live.backend.outages > 0, 5)

        own_redis.start()
        with anyio.fail_after(15):
            while True:  # both subscriptions renewed on the new server
                if await live.listened("market_data", ["SPY", "QQQ"]) == {"SPY", "QQQ"}:
                    break
                await asyncio.sleep(0.05)
        await live.publish(LiveEvent("market_data", "market_data", "QQQ", {"n": 3}))
        await live.publish(LiveEvent("market_data", "market_data", "SPY", {"n": 4}))
        with anyio.fail_after(3):
            assert [(await anext(events)).data for _ in range(2)] == [{"n": 3}, {"n": 4}]
        await session.close()
