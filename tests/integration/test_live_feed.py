"""The quote feed on real Redis: one publisher however many workers, takeover when the leader
stops or dies, and every worker answering quotes from what the leader wrote."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import msgspec
import pytest
from redis.asyncio import Redis

from backend.live.feed import LATEST_KEY, LOCK_KEY, TICK_KEY, QuoteFeed
from contract.ports import LiveEvent
from market.feed import live_price
from ops.settings import PROJECT_ROOT

pytestmark = pytest.mark.anyio

SEED = 42
CLOSES = {"SPY": 500.0, "QQQ": 400.0, "AAPL": 190.0}
TICK = 0.2
TTL = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.delete(LOCK_KEY, LATEST_KEY, TICK_KEY)
    try:
        yield client
    finally:
        await client.delete(LOCK_KEY, LATEST_KEY, TICK_KEY)
        await client.aclose()


async def closes() -> dict[str, float]:
    return dict(CLOSES)


class Recorder:
    """A publish callback that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[LiveEvent] = []

    async def __call__(self, event: LiveEvent) -> None:
        self.events.append(event)


def make_feed(redis: Redis, publish: Recorder, **options: object) -> QuoteFeed:
    return QuoteFeed(redis, closes, SEED, publish, tick_seconds=TICK, lock_ttl=TTL, **options)  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], within: float) -> float:
    """Seconds until `predicate()` holds (fails after `within` seconds)."""
    started = time.perf_counter()
    with anyio.fail_after(within):
        while True:
            if predicate():
                return time.perf_counter() - started
            await asyncio.sleep(0.005)


def spawn(*args: str) -> subprocess.Popen[str]:
    """`python ARGS` in the project, stdout piped (started by pid, stopped by the test)."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_exactly_one_of_two_feeds_publishes(redis: Redis) -> None:
    one_events, two_events = Recorder(), Recorder()
    one, two = make_feed(redis, one_events), make_feed(redis, two_events)
    await one.start()
    await two.start()
    try:
        await wait_for(lambda: one.is_leader or two.is_leader, 3)
        for _ in range(40):  # two seconds of ticks: never two leaders, never none
            assert one.is_leader != two.is_leader
            await asyncio.sleep(0.05)
        leader, follower = (one, two) if one.is_leader else (two, one)
        assert await leader.leader() == leader.token
        leader_events = one_events if leader is one else two_events
        follower_events = two_events if leader is one else one_events
        assert leader_events.events, "the leader publishes"
        assert follower_events.events == [], "the follower never does"
        assert {event.symbol for event in leader_events.events} == set(CLOSES)
        assert all(e.type == e.channel == "market_data" for e in leader_events.events)
        assert leader.lag_seconds < TICK + 0.1
        assert follower.lag_seconds < TICK + 0.2, "followers see the leader's ticks"
    finally:
        await one.stop()
        await two.stop()


async def test_a_stopped_leader_hands_over_at_once(redis: Redis) -> None:
    one, two = make_feed(redis, Recorder()), make_feed(redis, Recorder())
    await one.start()
    await wait_for(lambda: one.is_leader, 3)
    await two.start()
    await asyncio.sleep(3 * TICK)
    assert not two.is_leader
    try:
        await one.stop()
        takeover = await wait_for(lambda: two.is_leader, TTL)
        print(f"takeover after a graceful stop: {takeover * 1000:.0f} ms")
        assert takeover <= TICK + 0.1
        assert not one.is_leader
    finally:
        await two.stop()


LEADER = textwrap.dedent(
    """
    import asyncio, sys
    from redis.asyncio import Redis
    from backend.live.feed import QuoteFeed

    async def closes():
        return {"SPY": 500.0}

    async def publish(event):
        pass

    async def main(url, tick, ttl):
        feed = QuoteFeed(Redis.from_url(url), closes, 42, publish, tick_seconds=tick, lock_ttl=ttl)
        await feed.start()
        while not feed.is_leader:
            await asyncio.sleep(0.01)
        print("leading", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
    """
)


async def test_a_dead_leaders_lock_expires_and_a_follower_takes_over(
    redis: Redis, redis_url: str
) -> None:
    """The leader is another process, killed with SIGKILL: it releases nothing."""
    ttl = 1.5
    process = spawn("-c", LEADER, redis_url, str(TICK), str(ttl))
    follower = QuoteFeed(redis, closes, SEED, Recorder(), tick_seconds=TICK, lock_ttl=ttl)
    try:
        assert process.stdout is not None
        line = await anyio.to_thread.run_sync(process.stdout.readline)
        assert line.strip() == "leading"
        await follower.start()
        await asyncio.sleep(3 * TICK)
        assert not follower.is_leader
        holder = await follower.leader()
        assert holder is not None
        assert f":{process.pid}:" in holder
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
        takeover = await wait_for(lambda: follower.is_leader, ttl + 1.0)
        print(f"takeover after the leader was killed: {takeover * 1000:.0f} ms (lock_ttl {ttl} s)")
        assert takeover <= ttl + 0.05
        assert await follower.leader() == follower.token
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await follower.stop()


async def test_every_worker_reads_the_quotes_the_leader_wrote(redis: Redis) -> None:
    leader, follower = make_feed(redis, Recorder()), make_feed(redis, Recorder())
    await leader.start()
    await wait_for(lambda: leader.is_leader, 3)
    await wait_for(lambda: leader.ticks >= 2, 3)
    try:
        raw = await redis.hgetall(LATEST_KEY)
        assert {key.decode() if isinstance(key, bytes) else key for key in raw} == set(CLOSES)
        price = await follower.latest("SPY")  # the follower never ticked itself
        assert price is not None
        stored = await redis.hget(LATEST_KEY, "SPY")
        assert stored is not None
        tick = msgspec.json.decode(stored)
        assert price == tick["price"] == live_price(SEED, "SPY", CLOSES["SPY"], tick["time"])
        assert abs(price / CLOSES["SPY"] - 1) <= 0.015
        assert await follower.latest("ZZZZ") is None
        assert set(await follower.latest_many(["SPY", "QQQ", "ZZZZ"])) == {"SPY", "QQQ"}
    finally:
        await leader.stop()
    later = QuoteFeed(
        redis,
        closes,
        SEED,
        Recorder(),
        tick_seconds=TICK,
        lock_ttl=TTL,
        clock=lambda: time.time() + 60,
    )
    assert await later.latest("SPY") is None, "a quote no feed refreshed is stale: None"


async def test_pushes_carry_the_built_quote_only_for_listened_symbols(redis: Redis) -> None:
    events = Recorder()
    built: list[tuple[str, float]] = []

    async def quote_for(symbol: str, price: float) -> dict[str, object]:  # stands for a Quote
        built.append((symbol, price))
        return {"symbol": symbol, "price": price, "built": True}

    async def listened(symbols: Sequence[str]) -> set[str]:
        return {"QQQ"} & set(symbols)

    feed = make_feed(redis, events, quote_for=quote_for, listened=listened)
    await feed.start()
    try:
        await wait_for(lambda: len(events.events) >= 3, 5)
    finally:
        await feed.stop()
    assert {event.symbol for event in events.events} == {"QQQ"}
    assert all(
        event.data == {"symbol": "QQQ", "price": p, "built": True}
        for event, (_, p) in zip(events.events, built, strict=False)
    )
    prices = [event.data["price"] for event in events.events]  # type: ignore[index]
    assert all(a != b for a, b in itertools.pairwise(prices)), "only moves are pushed"


async def test_stop_returns_even_when_a_callback_swallows_the_cancel(redis: Redis) -> None:
    """A library may turn a cancel into a timeout (Python 3.11): stop must not wait forever."""
    entered = asyncio.Event()

    async def slow_closes() -> dict[str, float]:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise TimeoutError("the cancel became a timeout") from None
        return dict(CLOSES)

    feed = QuoteFeed(redis, slow_closes, SEED, Recorder(), tick_seconds=TICK, lock_ttl=TTL)
    await feed.start()
    with anyio.fail_after(3):
        await entered.wait()
    started = time.perf_counter()
    with anyio.fail_after(5):
        await feed.stop()
    assert time.perf_counter() - started < 2
    assert not feed.running
    assert await feed.leader() is None, "the lock is released"


async def test_a_new_data_version_moves_the_feed_to_the_new_closes_at_once(redis: Redis) -> None:
    current: dict[str, object] = {"version": "1", "close": 500.0}

    async def loaded_closes() -> dict[str, float]:
        return {"SPY": float(current["close"])}  # type: ignore[arg-type]

    feed = QuoteFeed(
        redis,
        loaded_closes,
        SEED,
        Recorder(),
        tick_seconds=TICK,
        lock_ttl=TTL,
        closes_refresh_seconds=3600,  # the clock alone would keep the old closes for an hour
        data_version=lambda: str(current["version"]),
    )
    await feed.start()
    try:
        await wait_for(lambda: feed.ticks >= 1, 3)
        price = await feed.latest("SPY")
        assert price is not None
        assert abs(price / 500.0 - 1) <= 0.015
        current.update(version="2", close=50.0)  # a reload: the stock is a tenth of the price
        ticks = feed.ticks
        await wait_for(lambda: feed.ticks >= ticks + 2, 3)
        price = await feed.latest("SPY")
        assert price is not None
        assert abs(price / 50.0 - 1) <= 0.015
    finally:
        await feed.stop()
