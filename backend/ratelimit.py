"""Rate limits that hold across worker processes and machines: a fixed window counted in Redis.

One Lua script counts the event and reads the window's remaining time, atomically, so two
workers can never both let the last allowed request through (Litestar's own middleware reads
and writes in two steps, which over-admits under concurrency). A key's window opens with its
first event and lasts `window_seconds` (Redis's own clock expires it). When Redis does not answer
the limiter fails open -- availability over strictness -- and logs that it does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import cast

from backend.cache import RedisDownError, RedisLink
from contract.ports import RateDecision

log = logging.getLogger("backend.ratelimit")

KEY_PREFIX = "ratelimit:"

# KEYS[1]: the counter. ARGV[1]: window in milliseconds, ARGV[2]: "1" to count this event, "0"
# to only look. Returns {count, milliseconds until the window closes}.
_SCRIPT = """
local count
if ARGV[2] == '1' then
  count = redis.call('INCR', KEYS[1])
else
  count = tonumber(redis.call('GET', KEYS[1]) or '0')
end
local left = redis.call('PTTL', KEYS[1])
if count > 0 and left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
if left < 0 then left = tonumber(ARGV[1]) end
return {count, left}
"""
# KEYS[1]: the counter. Takes back one event of the open window; never below zero.
_RELEASE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisLimiter:
    """The `RateLimitPort` in Redis: atomic per key across every worker that shares the Redis."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._script = link.client.register_script(_SCRIPT)
        self._release = link.client.register_script(_RELEASE)
        self.failing_open = False

    async def _run(self, key: str, limit: int, window_seconds: int, count: bool) -> RateDecision:
        try:
            raw = await self._link.call(
                lambda client: self._script(
                    keys=[KEY_PREFIX + key], args=[window_seconds * 1000, "1" if count else "0"]
                ),
                "count a rate limit",
            )
        except RedisDownError:
            if not self.failing_open:
                self.failing_open = True
                log.warning("rate limits fail open: Redis does not answer, nothing is limited")
            return RateDecision(True, limit, limit, window_seconds)
        if self.failing_open:
            self.failing_open = False
            log.warning("rate limits enforced again: Redis answers")
        used, left_ms = (int(value) for value in cast("list[int]", raw))
        reset = max(1, -(-left_ms // 1000))  # whole seconds, rounded up
        if count:
            return RateDecision(used <= limit, limit, max(0, limit - used), reset)
        return RateDecision(used < limit, limit, max(0, limit - used), reset)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        return await self._run(key, limit, window_seconds, count=True)

    async def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        return await self._run(key, limit, window_seconds, count=False)

    async def release(self, key: str, window_seconds: int) -> None:
        # Redis down: the limiter fails open already, there is nothing to give back.
        with contextlib.suppress(RedisDownError):
            await self._link.call(
                lambda client: self._release(keys=[KEY_PREFIX + key]), "release a rate limit"
            )
