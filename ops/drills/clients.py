"""The clients of a drill: the frontend's idempotent reads through the gateway at a fixed rate,
from a thread, every answer recorded (when, status, which backend served it), so a drill can say
how many requests its clients saw fail and when."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import httpx

from ops.gateway.routing import CLIENT_COOKIE

API = "/api/v1"
DASHBOARDS = 500
# The frontend's reads (the uncached ones are in each drill's own checks).
READS = (
    "{api}/market-data/{symbol}",
    "{api}/market-data/{symbol}/historical?period=1h&interval=5m",
    "{api}/signals/{symbol}",
    "{api}/market/opportunities?limit=5",
)


@dataclass(frozen=True, slots=True)
class Seen:
    """One answer as the client saw it; status 0 = no answer (the error names why)."""

    at: float
    seconds: float
    status: int
    upstream: str
    path: str
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Readers:
    """Anonymous dashboards (each its own address and sticky cookie, so a canary spreads them
    over the buckets) reading through the gateway at `rate` per second until stopped."""

    base: str
    symbols: list[str]
    rate: float
    seen: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Readers:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> Readers:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def failures(self, since: float = 0.0, until: float = math.inf) -> list[Seen]:
        return [s for s in list(self.seen) if s.failed and since <= s.at <= until]

    def count(self, since: float = 0.0, until: float = math.inf, upstream: str = "") -> int:
        return sum(
            1
            for s in list(self.seen)
            if since <= s.at <= until and (not upstream or s.upstream == upstream)
        )

    def p95_ms(self, since: float = 0.0, until: float = math.inf) -> float | None:
        times = sorted(s.seconds for s in list(self.seen) if since <= s.at <= until and s.status)
        if not times:
            return None
        return round(times[max(0, math.ceil(0.95 * len(times)) - 1)] * 1000, 1)

    async def _one(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        user = rng.randrange(DASHBOARDS)
        symbol = urllib.parse.quote(rng.choice(self.symbols), safe="")
        path = rng.choice(READS).format(api=API, symbol=symbol)
        headers = {
            "X-Forwarded-For": f"10.78.{user >> 8}.{user & 255}",
            "Cookie": f"{CLIENT_COOKIE}=drill-{user}",
        }
        began = time.monotonic()
        try:
            answer = await client.get(path, headers=headers)
            seen = Seen(
                began,
                time.monotonic() - began,
                answer.status_code,
                answer.headers.get("x-gateway-upstream", "?"),
                path,
                answer.text[:200] if answer.status_code >= 500 else "",
            )
        except httpx.HTTPError as exc:
            seen = Seen(began, time.monotonic() - began, 0, "?", path, type(exc).__name__)
        self.seen.append(seen)

    async def _run(self) -> None:
        rng = random.Random(7)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.base, timeout=15.0, limits=limits) as client:
            began, index = time.monotonic(), 0
            while not self._stop.is_set():
                delay = began + index / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(min(delay, 0.1))
                    continue
                index += 1
                task = asyncio.create_task(self._one(client, rng))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=20.0)
