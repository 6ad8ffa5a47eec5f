"""`PgHistory`: the stored history of PostgreSQL as the `HistoryPort` the shared reads run on.

A symbol's whole base series (1d or 5m) is read in one ordered query and kept, encoded, in Redis
(read-through, with a TTL) and decoded in process memory, both keyed by the data version (the id
of the last completed load run), so `contract.reads.HistoryReads` computes on exactly the bars the
loader stored and answers as the mock does for the same data.

When Redis is down the cache is skipped and reads come from PostgreSQL; when PostgreSQL is down
what is cached (in Redis or in memory) still answers and the rest is a 503 naming the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from backend.cache import RedisDownError, RedisLink
from backend.db.cache import market_key
from backend.db.session import DATABASE
from backend.market.repositories import LoadRunInfo, MarketRepository
from backend.observability import CACHE_HITS, CACHE_MISSES
from contract.errors import DependencyDown
from contract.ports import BaseInterval
from contract.types import DataInfo
from contract.universe import BY_SYMBOL, Listing
from market.bars import Bars
from market.feed import live_price

log = logging.getLogger("backend.market")

LatestPrice = Callable[[str], Awaitable[float | None]]

_MAGIC = b"BARS"
_HEADER = struct.Struct("<4sQ")
_MEMORY_ENTRIES = 512
_NO_DATA = DataInfo(source="synthetic", seed=None, asof="1970-01-01")
# How long a live price read from Redis is reused: the feed ticks once a second, and under load
# most quotes then skip a round trip to Redis for a price at most this much older.
LIVE_PRICE_SECONDS = 0.1


def encode_bars(bars: Bars) -> bytes:
    """Bars as bytes for Redis: a header with the count, then the six arrays little-endian."""
    parts = [_HEADER.pack(_MAGIC, len(bars))]
    parts += [bars.time.astype("<i8").tobytes()]
    parts += [getattr(bars, name).astype("<f8").tobytes() for name in ("open", "high", "low")]
    parts += [bars.close.astype("<f8").tobytes(), bars.volume.astype("<i8").tobytes()]
    return b"".join(parts)


def decode_bars(raw: bytes) -> Bars | None:
    """The Bars encoded by `encode_bars`, or None for anything else (a foreign or torn value)."""
    if len(raw) < _HEADER.size:
        return None
    magic, count = _HEADER.unpack_from(raw)
    if magic != _MAGIC or len(raw) != _HEADER.size + 48 * count:
        return None
    arrays = []
    offset = _HEADER.size
    for dtype in ("<i8", "<f8", "<f8", "<f8", "<f8", "<i8"):
        arrays.append(np.frombuffer(raw, dtype=dtype, count=count, offset=offset))
        offset += 8 * count
    time_, open_, high, low, close, volume = arrays
    return Bars(
        time=time_.astype(np.int64),
        open=open_.astype(np.float64),
        high=high.astype(np.float64),
        low=low.astype(np.float64),
        close=close.astype(np.float64),
        volume=volume.astype(np.int64),
    )


def listing_for(symbol: str) -> Listing:
    """The universe's listing of a symbol; a symbol outside it is listed under its own name."""
    return BY_SYMBOL.get(symbol) or Listing(symbol, symbol, "Other", "Unknown")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is loaded: the data version, the served listings and where the data came from."""

    version: int
    tag: str
    listings: tuple[Listing, ...]
    symbols: frozenset[str]
    info: DataInfo


class PgHistory:
    """The `HistoryPort` over PostgreSQL, with a Redis read-through cache and process memory."""

    def __init__(
        self,
        repository: MarketRepository,
        link: RedisLink,
        *,
        ttl_seconds: int = 3600,
        latest_price: LatestPrice | None = None,
        seed: int = 42,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repository = repository
        self._link = link
        self._ttl = ttl_seconds
        self._latest_price = latest_price
        self._seed = seed
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._memory: OrderedDict[tuple[int, str, str], Bars] = OrderedDict()
        self._loading: dict[tuple[int, str, str], asyncio.Future[Bars]] = {}
        self._live: dict[str, tuple[float, float]] = {}  # symbol -> (price, monotonic read time)

    # -- what is loaded ---------------------------------------------------------------------

    @property
    def version(self) -> int | None:
        return None if self._snapshot is None else self._snapshot.version

    async def refresh(self) -> bool:
        """Read the data version; on a change, reload the listings and drop cached bars.

        True when the snapshot changed. Raises DependencyDown when the database does not answer
        (the previous snapshot, if any, stays in force).
        """
        run = await self._repository.latest_run()
        version = 0 if run is None else run.id
        if self._snapshot is not None and self._snapshot.version == version:
            return False
        symbols = await self._repository.symbols()
        self._snapshot = Snapshot(
            version=version,
            tag="0" if run is None else run.tag,
            listings=tuple(listing_for(symbol) for symbol in symbols),
            symbols=frozenset(symbols),
            info=self._info(run),
        )
        self._memory.clear()
        if run is None:
            log.warning("no completed load run: run ./start.sh load-data to fill the database")
        log.info("market data version %s: %d symbols", version, len(symbols))
        return True

    @staticmethod
    def _info(run: LoadRunInfo | None) -> DataInfo:
        if run is None:
            return _NO_DATA
        source = run.source if run.source in ("synthetic", "csv", "provider") else "provider"
        return DataInfo(
            source=source,  # type: ignore[arg-type]
            seed=run.seed,
            asof=run.asof.isoformat(),
        )

    async def watch(self, every_seconds: float) -> None:
        """Follow the data version for as long as the app runs (a background task)."""
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await self.refresh()
            except DependencyDown:
                continue  # the previous snapshot answers; the session module logs the outage
            except Exception:
                log.exception("reading the market data version failed")

    def _current(self) -> Snapshot:
        if self._snapshot is None:
            raise DependencyDown(DATABASE)
        return self._snapshot

    def listings(self) -> list[Listing]:
        return list(self._current().listings)

    def data_version(self) -> str:
        """The tag of the last completed load run (id and start time); "none" before any."""
        return "none" if self._snapshot is None else self._snapshot.tag

    def data_info(self) -> DataInfo:
        return _NO_DATA if self._snapshot is None else self._snapshot.info

    # -- bars -------------------------------------------------------------------------------

    async def bars(self, symbol: str, base: BaseInterval) -> Bars:
        snapshot = self._current()
        if symbol not in snapshot.symbols:
            return Bars.empty()
        key = (snapshot.version, symbol, base)
        found = self._memory.get(key)
        if found is not None:
            CACHE_HITS.labels("process").inc()
            return found
        CACHE_MISSES.labels("process").inc()
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Bars] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            bars = await self._load(snapshot.tag, symbol, base)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(bars)
        if self._snapshot is not None and self._snapshot.version == snapshot.version:
            self._memory[key] = bars
            if len(self._memory) > _MEMORY_ENTRIES:
                self._memory.popitem(last=False)
        return bars

    async def _load(self, tag: str, symbol: str, base: BaseInterval) -> Bars:
        key = market_key(symbol, "bars", base, f"v{tag}")
        try:
            raw = await self._link.call(lambda client: client.get(key), "read the bar cache")
        except RedisDownError:
            raw = None
        bars = decode_bars(raw) if isinstance(raw, bytes) else None
        if bars is not None:
            CACHE_HITS.labels("redis").inc()
            return bars
        CACHE_MISSES.labels("redis").inc()
        bars = await self._repository.bars(symbol, base)
        blob = encode_bars(bars)
        # Without Redis the answer comes from PostgreSQL; the cache fills again once it is back.
        with contextlib.suppress(RedisDownError):
            await self._link.call(
                lambda client: client.set(key, blob, ex=self._ttl), "fill the bar cache"
            )
        return bars

    # -- live price -------------------------------------------------------------------------

    async def live_price(self, symbol: str) -> float | None:
        """The feed's latest tick from Redis; without Redis (or before the first tick) the same
        simulated price computed here; None when the feed is off (the quote is the last close)."""
        if self._latest_price is None:
            return None
        now = time.monotonic()
        recent = self._live.get(symbol)
        if recent is not None and now - recent[1] < LIVE_PRICE_SECONDS:
            return recent[0]
        try:
            price = await self._latest_price(symbol)
        except Exception:  # Redis down: the simulated feed is a pure function, compute it here
            price = None
        if price is not None:
            self._live[symbol] = (price, now)
            return price
        daily = await self.bars(symbol, "1d")
        if len(daily) == 0:
            return None
        seed = self.data_info().seed
        return live_price(
            self._seed if seed is None else seed, symbol, float(daily.close[-1]), self._clock()
        )
