"""The Redis rate limiter on a real Redis: atomic across clients (as across worker processes),
windows that close, peeks that do not count, and failing open (and saying so) without Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from backend.cache import RedisLink, create_redis
from backend.ratelimit import RedisLimiter
from contract.ports import RateDecision

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def links(redis_url: str) -> AsyncIterator[list[RedisLink]]:
    made = [RedisLink(create_redis(redis_url, timeout=5)) for _ in range(2)]
    try:
        yield made
    finally:
        for link in made:
            await link.close()


async def test_two_limiters_sharing_redis_admit_exactly_the_limit(links: list[RedisLink]) -> None:
    limiters = [RedisLimiter(link) for link in links]  # two processes' worth of clients
    key = f"test:{uuid.uuid4().hex}"
    decisions: list[RateDecision] = []

    async def hit(limiter: RedisLimiter) -> None:
        decisions.append(await limiter.hit(key, 50, 60))

    async with anyio.create_task_group() as group:
        for index in range(200):
            group.start_soon(hit, limiters[index % 2])
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 50
    assert sorted(d.remaining for d in allowed) == list(range(50))
    assert all(d.remaining == 0 and 0 < d.reset_seconds <= 60 for d in decisions if not d.allowed)


async def test_peek_does_not_count_and_a_window_closes(links: list[RedisLink]) -> None:
    limiter = RedisLimiter(links[0])
    key = f"test:{uuid.uuid4().hex}"
    fresh = await limiter.peek(key, 2, 1)
    assert (fresh.allowed, fresh.remaining) == (True, 2)
    assert (await limiter.hit(key, 2, 1)).remaining == 1
    assert (await limiter.peek(key, 2, 1)).remaining == 1, "a peek leaves the count alone"
    assert (await limiter.hit(key, 2, 1)).allowed
    over = await limiter.hit(key, 2, 1)
    assert not over.allowed
    assert not (await limiter.peek(key, 2, 1)).allowed
    await anyio.sleep(1.1)
    assert (await limiter.hit(key, 2, 1)).allowed, "a new window opens after the old one"


async def test_without_redis_the_limiter_fails_open_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = RedisLink(create_redis("redis://127.0.0.1:9/0"))  # nothing listens on port 9
    limiter = RedisLimiter(dead)
    try:
        with caplog.at_level(logging.WARNING, logger="backend.ratelimit"):
            decisions = [await limiter.hit("anyone", 1, 60) for _ in range(3)]
    finally:
        await dead.close()
    assert all(d.allowed for d in decisions)
    said = [r.getMessage() for r in caplog.records if r.name == "backend.ratelimit"]
    assert said == ["rate limits fail open: Redis does not answer, nothing is limited"]
