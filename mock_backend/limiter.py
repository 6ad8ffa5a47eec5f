"""An in-memory fixed-window rate limiter (one process: the mock runs a single worker)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from contract.ports import RateDecision


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    def _state(self, key: str, window_seconds: int) -> tuple[int, int, int]:
        now = self._clock()
        window = int(now // window_seconds)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
        reset = max(1, math.ceil((window + 1) * window_seconds - now))
        return window, count, reset

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        window, count, reset = self._state(key, window_seconds)
        count += 1
        self._windows[key] = (window, count)
        if len(self._windows) > 100_000:
            self._prune(window_seconds)
        return RateDecision(count <= limit, limit, max(0, limit - count), reset)

    async def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        _, count, reset = self._state(key, window_seconds)
        return RateDecision(count < limit, limit, max(0, limit - count), reset)

    async def release(self, key: str, window_seconds: int) -> None:
        window, count, _ = self._state(key, window_seconds)
        if count > 0:
            self._windows[key] = (window, count - 1)

    def _prune(self, window_seconds: int) -> None:
        current = int(self._clock() // window_seconds)
        self._windows = {k: v for k, v in self._windows.items() if v[0] == current}
