"""WebSocket fan-out on real Redis: a push made on one worker reaches sessions on the others,
each session sees only what it subscribed to, and a slow session's backlog stays bounded."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from backend.live.channels import ChannelsLive
from contract.ports import LiveEvent
from contract.types import Quote
from market.calendar import iso_ms
from ops.settings import PROJECT_ROOT

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def quote(symbol: str, price: float) -> Quote:
    return Quote(
        symbol=symbol,
        price=price,
        change=0.5,
        change_percent=0.25,
        volume=1000,
        open=price,
        high=price,
        low=price,
        previous_close=price - 0.5,
        bid=price - 0.01,
        ask=price + 0.01,
        timestamp=iso_ms(time.time()),
    )


async def next_event(iterator: AsyncIterator[LiveEvent]) -> LiveEvent:
    with anyio.fail_after(3):
        return await anext(iterator)


async def wait_listened(live: ChannelsLive, channel: str, symbol: str) -> None:
    """Until Redis reports a subscriber of (channel, symbol): the subscription is in place."""
    with anyio.fail_after(3):
        while True:
            if symbol in await live.listened(channel, [symbol]):
                return
            await asyncio.sleep(0.01)


async def test_a_push_on_one_worker_reaches_a_session_on_another(redis_url: str) -> None:
    async with ChannelsLive(redis_url) as first, ChannelsLive(redis_url) as second:
        session = await first.open_session()
        await session.subscribe("market_data", "SPY")
        await session.subscribe("signals", "QQQ")
        await wait_listened(first, "market_data", "SPY")
        events = session.events()

        await second.publish(LiveEvent("market_data", "market_data", "QQQ", quote("QQQ", 1.0)))
        sent = quote("SPY", 512.25)
        await second.publish(LiveEvent("market_data", "market_data", "SPY", sent))
        received = await next_event(events)
        # Not subscribed to QQQ quotes: the first event this session sees is SPY's.
        assert (received.type, received.channel, received.symbol) == (
            "market_data",
            "market_data",
            "SPY",
        )
        assert msgspec.convert(received.data, Quote) == sent

        signal = {"signal": {"id": "QQQ-1d-1", "symbol": "QQQ", "type": "BUY"}}
        await second.publish(LiveEvent("signal", "signals", "QQQ", signal))
        received = await next_event(events)
        assert (received.type, received.channel, received.symbol) == ("signal", "signals", "QQQ")
        assert received.data == signal

        await session.unsubscribe("market_data", "SPY")
        await second.publish(LiveEvent("market_data", "market_data", "SPY", quote("SPY", 1.0)))
        await second.publish(LiveEvent("signal", "signals", "QQQ", {"n": 2}))
        received = await next_event(events)
        assert received.data == {"n": 2}, "no SPY quote after unsubscribing"

        await session.close()
        with anyio.fail_after(2):
            assert [event async for event in events] == []


async def test_sessions_on_one_worker_share_a_channel_independently(redis_url: str) -> None:
    async with ChannelsLive(redis_url) as live:
        one, two = await live.open_session(), await live.open_session()
        await one.subscribe("market_data", "AAPL")
        await two.subscribe("market_data", "AAPL")
        await wait_listened(live, "market_data", "AAPL")
        await two.close()  # the other session keeps its subscription
        await live.publish(LiveEvent("market_data", "market_data", "AAPL", {"price": 3.5}))
        events = one.events()
        assert (await next_event(events)).data == {"price": 3.5}
        await one.close()


def spawn(*args: str) -> subprocess.Popen[bytes]:
    """`python ARGS` in the project (started by pid, stopped by the test)."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )


PUBLISHER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from backend.live.channels import ChannelsLive
    from contract.ports import LiveEvent

    async def main(url: str, count: int) -> None:
        async with ChannelsLive(url) as live:
            while "MSFT" not in await live.listened("market_data", ["MSFT"]):
                await asyncio.sleep(0.01)
            for seq in range(count):
                data = {"seq": seq, "pid": os.getpid(), "sent": time.time()}
                await live.publish(LiveEvent("market_data", "market_data", "MSFT", data))
                await asyncio.sleep(0.02)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_a_push_from_another_process_reaches_this_one(redis_url: str) -> None:
    """Two real processes: the publisher is a separate interpreter, as a second worker is."""
    count = 50
    async with ChannelsLive(redis_url) as live:
        session = await live.open_session()
        await session.subscribe("market_data", "MSFT")
        process = spawn("-c", PUBLISHER, redis_url, str(count))
        try:
            latencies: list[float] = []
            pids: set[int] = set()
            events = session.events()
            with anyio.fail_after(20):
                while len(latencies) < count:
                    event = await anext(events)
                    data = event.data
                    assert isinstance(data, dict)
                    assert data["seq"] == len(latencies), "in order, none lost"
                    latencies.append(time.time() - data["sent"])
                    pids.add(data["pid"])
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert pids == {process.pid} != {os.getpid()}
        p50 = statistics.median(latencies) * 1000
        p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
        print(f"cross-process fan-out latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        assert p50 < 50
        await session.close()


async def test_a_slow_session_keeps_only_the_newest_events(redis_url: str) -> None:
    backlog = 16
    sent = 500
    async with ChannelsLive(redis_url, max_backlog=backlog) as live:
        session = await live.open_session()
        await session.subscribe("market_data", "NVDA")
        await wait_listened(live, "market_data", "NVDA")
        for seq in range(sent):
            await live.publish(LiveEvent("market_data", "market_data", "NVDA", {"seq": seq}))
        # Nobody reads: everything beyond the bound is dropped, oldest first.
        with anyio.fail_after(5):
            while session.dropped < sent - backlog:
                assert session.backlog <= backlog
                assert all(size <= backlog for size in session.subscriber_backlogs())
                await asyncio.sleep(0.01)
        assert session.backlog == backlog
        events = session.events()
        seqs = [(await next_event(events)).data["seq"] for _ in range(backlog)]  # type: ignore[index]
        assert seqs == list(range(sent - backlog, sent))
        await session.close()


async def test_channel_names_are_namespaced_by_redis_database(redis_url: str) -> None:
    """Pub/sub ignores database numbers; two deployments on two databases must not mix."""
    base, _, _ = redis_url.rpartition("/")
    unused = ChannelsLive(f"{base}/0")  # never connects: names only
    assert unused.channel_name("market_data", "SPY") == "market_data:SPY"
    await unused.redis.aclose()
    async with ChannelsLive(redis_url) as mine, ChannelsLive(redis_url, namespace="x:") as other:
        assert mine.channel_name("market_data", "SPY").endswith(":market_data:SPY")
        assert mine.namespace != other.namespace
        theirs = await other.open_session()
        await theirs.subscribe("market_data", "IWM")
        ours = await mine.open_session()
        await ours.subscribe("market_data", "IWM")
        await wait_listened(mine, "market_data", "IWM")
        await wait_listened(other, "market_data", "IWM")
        await mine.publish(LiveEvent("market_data", "market_data", "IWM", {"from": "mine"}))
        await other.publish(LiveEvent("market_data", "market_data", "IWM", {"from": "other"}))
        assert (await next_event(ours.events())).data == {"from": "mine"}
        assert (await next_event(theirs.events())).data == {"from": "other"}
        await ours.close()
        await theirs.close()
