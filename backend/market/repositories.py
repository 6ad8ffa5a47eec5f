"""Queries over the market-data tables the loader fills: bars, indicators, load runs.

Each read is one statement: a symbol's whole stored series comes back as one row of arrays
(ordered by time), which is far cheaper to turn into numpy than thousands of rows. Larger
intervals can be aggregated in SQL with the contract's alignment (`date_bin` from the 14:30 UTC
session open for intraday buckets, ISO weeks and calendar months with `date_trunc`), giving the
same buckets as `market.calendar.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.session import database_calls
from contract.ports import BaseInterval
from market import calendar
from market.bars import Bars
from market.indicators import INDICATOR_NAMES, IndicatorFrame


@dataclass(frozen=True, slots=True)
class LoadRunInfo:
    """The last completed load run: its id is the data version; `tag` (id and start time) tells
    one database's run from another's in a shared cache."""

    id: int
    source: str
    seed: int | None
    asof: date
    tag: str


_LATEST_RUN = text(
    "SELECT id, source, seed, asof, (extract(epoch FROM started_at) * 1000000)::bigint "
    "FROM load_runs WHERE status = 'done' ORDER BY id DESC LIMIT 1"
)

# A skip scan over the primary key (symbol, interval, time): one index probe per symbol
# instead of reading every bar, and one more for its daily bars. Only symbols with daily bars
# are served: quotes, backtests and the daily reads all need them (a CSV load may hold a symbol
# at 5 minutes only).
_SYMBOLS = text(
    """
    WITH RECURSIVE present(symbol) AS (
        (SELECT symbol FROM bars ORDER BY symbol LIMIT 1)
        UNION ALL
        SELECT (SELECT b.symbol FROM bars b WHERE b.symbol > p.symbol ORDER BY b.symbol LIMIT 1)
        FROM present p WHERE p.symbol IS NOT NULL
    )
    SELECT symbol FROM present
    WHERE symbol IS NOT NULL
      AND EXISTS (SELECT 1 FROM bars d WHERE d.symbol = present.symbol AND d.interval = '1d')
    """
)

_BARS = text(
    """
    SELECT array_agg(extract(epoch FROM time)::bigint ORDER BY time),
           array_agg(open ORDER BY time), array_agg(high ORDER BY time),
           array_agg(low ORDER BY time), array_agg(close ORDER BY time),
           array_agg(volume ORDER BY time)
    FROM bars WHERE symbol = :symbol AND interval = :interval
    """
)

_INDICATORS = text(
    "SELECT array_agg(extract(epoch FROM time)::bigint ORDER BY time), "
    + ", ".join(f"array_agg(coalesce({name}, 'NaN') ORDER BY time)" for name in INDICATOR_NAMES)
    + " FROM indicators WHERE symbol = :symbol AND interval = :interval"
)

# Bucket keys per interval: intraday strides divide a day, so `date_bin` from a 14:30 UTC origin
# aligns every day's buckets to its session open and a bucket never spans two sessions.
_SESSION_ORIGIN = "TIMESTAMPTZ '2005-01-03 14:30:00+00'"
_BUCKETS = {
    "15m": f"date_bin(INTERVAL '15 minutes', time, {_SESSION_ORIGIN})",
    "30m": f"date_bin(INTERVAL '30 minutes', time, {_SESSION_ORIGIN})",
    "1h": f"date_bin(INTERVAL '1 hour', time, {_SESSION_ORIGIN})",
    "4h": f"date_bin(INTERVAL '4 hours', time, {_SESSION_ORIGIN})",
    "1wk": "date_trunc('week', time AT TIME ZONE 'UTC')",
    "1mo": "date_trunc('month', time AT TIME ZONE 'UTC')",
}


def _aggregate_sql(interval: str) -> Any:
    bucket = _BUCKETS[interval]
    return text(
        f"""
        WITH bucketed AS (
            SELECT {bucket} AS bucket, time, open, high, low, close, volume
            FROM bars WHERE symbol = :symbol AND interval = :interval
        ), grouped AS (
            SELECT bucket, min(time) AS first_time,
                   (array_agg(open ORDER BY time))[1] AS open, max(high) AS high,
                   min(low) AS low, (array_agg(close ORDER BY time DESC))[1] AS close,
                   sum(volume)::bigint AS volume
            FROM bucketed GROUP BY bucket
        )
        SELECT array_agg(extract(epoch FROM first_time)::bigint ORDER BY bucket),
               array_agg(open ORDER BY bucket), array_agg(high ORDER BY bucket),
               array_agg(low ORDER BY bucket), array_agg(close ORDER BY bucket),
               array_agg(volume ORDER BY bucket)
        FROM grouped
        """
    )


def _bars_from_row(row: Any) -> Bars:
    if row is None or row[0] is None:
        return Bars.empty()
    return Bars(
        time=np.asarray(row[0], dtype=np.int64),
        open=np.asarray(row[1], dtype=np.float64),
        high=np.asarray(row[2], dtype=np.float64),
        low=np.asarray(row[3], dtype=np.float64),
        close=np.asarray(row[4], dtype=np.float64),
        volume=np.asarray(row[5], dtype=np.int64),
    )


class MarketRepository:
    """Reads of bars, indicators and load runs; a dead database is a 503 naming it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def latest_run(self) -> LoadRunInfo | None:
        """The last completed load run, or None before the first load."""
        with database_calls():
            async with self._engine.connect() as connection:
                row = (await connection.execute(_LATEST_RUN)).first()
        if row is None:
            return None
        return LoadRunInfo(
            id=int(row[0]),
            source=str(row[1]),
            seed=None if row[2] is None else int(row[2]),
            asof=row[3],
            tag=f"{int(row[0])}.{int(row[4])}",
        )

    async def symbols(self) -> list[str]:
        """Every symbol with stored daily bars, sorted."""
        with database_calls():
            async with self._engine.connect() as connection:
                rows = (await connection.execute(_SYMBOLS)).all()
        return sorted(str(row[0]) for row in rows)

    async def bars(self, symbol: str, interval: BaseInterval) -> Bars:
        """The whole stored series of `symbol` at a base interval, oldest first; empty when none."""
        with database_calls():
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(_BARS, {"symbol": symbol, "interval": interval})
                ).first()
        return _bars_from_row(row)

    async def aggregated(self, symbol: str, interval: str) -> Bars:
        """Bars of `symbol` at any interval, larger ones aggregated in SQL from the stored base
        series with the contract's alignment (equal to `market.calendar.aggregate`)."""
        base = calendar.base_interval(interval)
        if interval == base:
            return await self.bars(symbol, "5m" if base == "5m" else "1d")
        with database_calls():
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(
                        _aggregate_sql(interval), {"symbol": symbol, "interval": base}
                    )
                ).first()
        return _bars_from_row(row)

    async def indicators(self, symbol: str, interval: BaseInterval) -> tuple[Any, IndicatorFrame]:
        """The stored indicators of `symbol` (times, frame), NaN where undefined."""
        with database_calls():
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(_INDICATORS, {"symbol": symbol, "interval": interval})
                ).first()
        if row is None or row[0] is None:
            return np.empty(0, dtype=np.int64), IndicatorFrame.empty()
        times = np.asarray(row[0], dtype=np.int64)
        frame = IndicatorFrame(
            **{
                name: np.asarray(row[index + 1], dtype=np.float64)
                for index, name in enumerate(INDICATOR_NAMES)
            }
        )
        return times, frame
