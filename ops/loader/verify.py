"""`verify-data`: is the database what the loads recorded, and what market/ computes?

For every symbol, the latest completed load run that loaded it is the reference. Per symbol and
interval, within that run's window: the stored count, first and last time and checksum (computed
by PostgreSQL over the ordered rows, see ops/loader/payload.py) must equal what the run recorded,
and every bar must have its indicator row. For a synthetic run the generator is run again and
must give the recorded checksums. A sample of stored indicator values is recomputed with
market/ from the stored bars and must agree to 1e-9 relative. Any difference is a mismatch,
named, and the command exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import random
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from market.bars import Bars
from market.calendar import iso_ms
from market.indicators import INDICATOR_NAMES, compute_indicators
from ops.loader.payload import SeriesDigest, digest
from ops.loader.rows import INTERVALS, Interval
from ops.loader.run import LoadError, check_schema, connect, database_url, worker_count, worker_pool
from ops.loader.sources import SyntheticRecipe, Window

RELATIVE_TOLERANCE = 1e-9
# Values this close to zero compare absolutely (a relative error means nothing there).
ABSOLUTE_FLOOR = 1e-12
SAMPLE_ROWS = 20
SAMPLE_SYMBOLS = 50
EMPTY_MD5 = digest(Bars.empty()).md5

_ROW_BYTES = (
    "int8send(extract(epoch FROM b.time)::int8) || float8send(b.open) || float8send(b.high) "
    "|| float8send(b.low) || float8send(b.close) || int8send(b.volume)"
)

_SERIES_SQL = f"""
WITH w AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bool[])
        AS w(symbol, interval, lo, hi, hashed)
)
SELECT w.symbol, w.interval,
    count(*) FILTER (WHERE b.inside) AS rows,
    min(extract(epoch FROM b.time)::int8) FILTER (WHERE b.inside) AS first,
    max(extract(epoch FROM b.time)::int8) FILTER (WHERE b.inside) AS last,
    CASE WHEN w.hashed THEN md5(coalesce(
        string_agg({_ROW_BYTES}, ''::bytea ORDER BY b.time) FILTER (WHERE b.inside),
        ''::bytea)) END AS md5,
    count(*) FILTER (WHERE b.time IS NOT NULL AND NOT b.inside) AS outside,
    (SELECT count(*) FROM indicators i WHERE i.symbol = w.symbol AND i.interval = w.interval
        AND i.time BETWEEN to_timestamp(w.lo) AND to_timestamp(w.hi)) AS indicator_rows
FROM w
LEFT JOIN LATERAL (
    SELECT b.*, coalesce(b.time BETWEEN to_timestamp(w.lo) AND to_timestamp(w.hi), false)
        AS inside
    FROM bars b WHERE b.symbol = w.symbol AND b.interval = w.interval
) b ON true
GROUP BY w.symbol, w.interval, w.lo, w.hi, w.hashed
"""

_BARS_COPY = (
    "SELECT extract(epoch FROM time)::int8, open, high, low, close, volume FROM bars "
    "WHERE symbol = {symbol} AND interval = {interval} AND time BETWEEN to_timestamp({lo}) "
    "AND to_timestamp({hi}) ORDER BY time"
)
_COPY_ROW = np.dtype(
    [
        ("count", ">i2"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("open_len", ">i4"),
        ("open", ">f8"),
        ("high_len", ">i4"),
        ("high", ">f8"),
        ("low_len", ">i4"),
        ("low", ">f8"),
        ("close_len", ">i4"),
        ("close", ">f8"),
        ("volume_len", ">i4"),
        ("volume", ">i8"),
    ]
)
_COPY_HEADER_BYTES = 19
_COPY_TRAILER_BYTES = 2


@dataclass(frozen=True, slots=True)
class Stored:
    """One (symbol, interval) as stored, within a run's window."""

    rows: int
    first: int | None
    last: int | None
    md5: str | None
    outside: int
    indicator_rows: int


@dataclass(slots=True)
class SeriesCheck:
    symbol: str
    interval: Interval
    run_id: int
    recorded: SeriesDigest
    stored: Stored | None = None
    generator: SeriesDigest | None = None
    indicator_values: int = 0
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        stored = self.stored
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "run_id": self.run_id,
            "recorded": self.recorded.to_json(),
            "stored": None
            if stored is None
            else {
                "rows": stored.rows,
                "first": None if stored.first is None else iso_ms(stored.first),
                "last": None if stored.last is None else iso_ms(stored.last),
                "md5": stored.md5,
                "outside_window": stored.outside,
                "indicator_rows": stored.indicator_rows,
            },
            "generator_md5": None if self.generator is None else self.generator.md5,
            "indicator_values_checked": self.indicator_values,
            "ok": not self.mismatches,
            "mismatches": self.mismatches,
            "notes": self.notes,
        }


@dataclass(slots=True)
class VerifyReport:
    runs: list[int]
    series: list[SeriesCheck]
    seconds: float = 0.0

    @property
    def mismatches(self) -> list[str]:
        return [m for s in self.series for m in s.mismatches]

    @property
    def indicator_values(self) -> int:
        return sum(s.indicator_values for s in self.series)

    def message(self) -> str:
        symbols = len({s.symbol for s in self.series})
        if self.mismatches:
            return (
                f"{len(self.mismatches)} mismatches in {symbols} symbols "
                f"({len(self.series)} series): {self.mismatches[0]}"
            )
        return (
            f"{len(self.series)} series of {symbols} symbols match load runs "
            f"{', '.join(f'#{r}' for r in self.runs)}; {self.indicator_values:,} indicator values "
            "recomputed"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.mismatches,
            "message": self.message(),
            "runs": self.runs,
            "series": [s.to_json() for s in self.series],
            "mismatches": self.mismatches,
            "indicator_values_checked": self.indicator_values,
            "seconds": round(self.seconds, 3),
        }


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _when(epoch: int | None) -> str:
    return "-" if epoch is None else iso_ms(epoch)[:19].replace("T", " ")


async def stored_series(
    conn: asyncpg.Connection, checks: list[SeriesCheck], hashed: set[str] | None = None
) -> None:
    """Fill in `stored` of each check (md5 only for symbols in `hashed`; None = all)."""
    if not checks:
        return
    rows = await conn.fetch(
        _SERIES_SQL,
        [c.symbol for c in checks],
        [c.interval for c in checks],
        [c.recorded.first for c in checks],
        [c.recorded.last for c in checks],
        [hashed is None or c.symbol in hashed for c in checks],
    )
    found = {(r["symbol"], r["interval"]): r for r in rows}
    for check in checks:
        row = found[(check.symbol, check.interval)]
        check.stored = Stored(
            rows=int(row["rows"]),
            first=row["first"],
            last=row["last"],
            md5=row["md5"],
            outside=int(row["outside"]),
            indicator_rows=int(row["indicator_rows"]),
        )


def compare(check: SeriesCheck) -> None:
    """Name every difference between the stored series, the run's record and the generator."""
    name = f"{check.symbol} {check.interval}"
    run = f"run #{check.run_id}"
    stored, recorded = check.stored, check.recorded
    assert stored is not None
    if stored.rows != recorded.rows:
        check.mismatches.append(
            f"{name}: {stored.rows} rows stored in {run}'s window, {run} recorded {recorded.rows}"
        )
    if stored.first != recorded.first or stored.last != recorded.last:
        check.mismatches.append(
            f"{name}: stored {_when(stored.first)} → {_when(stored.last)}, {run} recorded "
            f"{_when(recorded.first)} → {_when(recorded.last)}"
        )
    if stored.md5 is not None and stored.md5 != recorded.md5:
        check.mismatches.append(
            f"{name}: checksum {stored.md5} of the stored rows differs from {recorded.md5} "
            f"recorded by {run} (a stored bar was changed, added or removed)"
        )
    if stored.indicator_rows != stored.rows:
        check.mismatches.append(
            f"{name}: {stored.indicator_rows} indicator rows for {stored.rows} bars"
        )
    if check.generator is not None and check.generator.md5 != recorded.md5:
        check.mismatches.append(
            f"{name}: the generator gives {check.generator.rows} rows with checksum "
            f"{check.generator.md5}, {run} recorded {recorded.rows} with {recorded.md5}"
        )
    if stored.outside:
        check.notes.append(
            f"{name}: {stored.outside} stored rows lie outside {run}'s window "
            "(kept from an earlier load)"
        )


async def fetch_bars(
    conn: asyncpg.Connection, symbol: str, interval: str, lo: int, hi: int
) -> Bars:
    """The stored bars of a window, via binary COPY (fixed-width rows read by numpy)."""
    buffer = io.BytesIO()
    query = _BARS_COPY.format(symbol="$1", interval="$2", lo="$3", hi="$4")
    await conn.copy_from_query(query, symbol, interval, lo, hi, output=buffer, format="binary")
    data = buffer.getvalue()[_COPY_HEADER_BYTES:-_COPY_TRAILER_BYTES]
    rows = np.frombuffer(data, dtype=_COPY_ROW)
    return Bars(
        time=rows["time"].astype(np.int64),
        open=rows["open"].astype(np.float64),
        high=rows["high"].astype(np.float64),
        low=rows["low"].astype(np.float64),
        close=rows["close"].astype(np.float64),
        volume=rows["volume"].astype(np.int64),
    )


def agree(stored: float | None, computed: float) -> bool:
    """Stored (NULL = None) and recomputed (NaN = undefined) values agree to 1e-9 relative."""
    if stored is None or math.isnan(computed):
        return stored is None and math.isnan(computed)
    scale = max(abs(stored), abs(computed))
    return abs(stored - computed) <= max(RELATIVE_TOLERANCE * scale, ABSOLUTE_FLOOR)


async def check_indicators(
    conn: asyncpg.Connection, check: SeriesCheck, rng: random.Random
) -> None:
    """Recompute the series' indicators from its stored bars and compare a sample of rows."""
    recorded = check.recorded
    if recorded.first is None or recorded.last is None:
        return
    bars = await fetch_bars(conn, check.symbol, check.interval, recorded.first, recorded.last)
    if not len(bars):
        return
    frame = compute_indicators(bars)
    n = len(bars)
    picks = sorted(set(range(max(0, n - 5), n)) | set(rng.sample(range(n), min(n, SAMPLE_ROWS))))
    columns = ", ".join(INDICATOR_NAMES)
    rows = await conn.fetch(
        f"SELECT extract(epoch FROM time)::int8 AS t, {columns} FROM indicators "
        "WHERE symbol = $1 AND interval = $2 "
        "AND time = ANY(SELECT to_timestamp(x) FROM unnest($3::int8[]) AS x)",
        check.symbol,
        check.interval,
        [int(bars.time[i]) for i in picks],
    )
    stored = {int(r["t"]): r for r in rows}
    for i in picks:
        t = int(bars.time[i])
        row = stored.get(t)
        if row is None:
            check.mismatches.append(
                f"{check.symbol} {check.interval}: no indicator row at {_when(t)}"
            )
            continue
        for name in INDICATOR_NAMES:
            computed = float(getattr(frame, name)[i])
            check.indicator_values += 1
            if not agree(row[name], computed):
                check.mismatches.append(
                    f"{check.symbol} {check.interval}: {name} at {_when(t)} is {row[name]} "
                    f"stored, {computed!r} recomputed with market/"
                )


def _generator_digests(job: tuple[int, str, Window]) -> dict[Interval, SeriesDigest]:
    seed, symbol, window = job
    series = SyntheticRecipe(seed, symbol, window).series()
    return {interval: digest(series.bars(interval)) for interval in INTERVALS}


def _window_of(params: dict[str, Any]) -> Window:
    window = params["window"]
    return Window(
        asof=date.fromisoformat(window["asof"]),
        daily_from=date.fromisoformat(window["daily_from"]),
        intraday_days=int(window["intraday_days"]),
    )


async def _reference(
    conn: asyncpg.Connection, symbols: tuple[str, ...] | None, run_id: int | None = None
) -> tuple[list[SeriesCheck], dict[int, asyncpg.Record]]:
    """Each symbol's latest completed run (or the given run) and the series it recorded."""
    if run_id is None:
        latest = await conn.fetch(
            "SELECT DISTINCT ON (s.symbol) s.symbol, s.run_id FROM load_run_symbols s "
            "JOIN load_runs r ON r.id = s.run_id WHERE r.status = 'done' "
            "ORDER BY s.symbol, s.run_id DESC"
        )
    else:
        latest = await conn.fetch(
            "SELECT symbol, run_id FROM load_run_symbols WHERE run_id = $1 ORDER BY symbol",
            run_id,
        )
    chosen = {r["symbol"]: int(r["run_id"]) for r in latest}
    if symbols is not None:
        chosen = {s: chosen[s] for s in symbols if s in chosen}
    runs = {
        int(r["id"]): r
        for r in await conn.fetch(
            "SELECT id, source, seed, asof, params, checksums FROM load_runs WHERE id = ANY($1)",
            sorted(set(chosen.values())),
        )
    }
    checks: list[SeriesCheck] = []
    for symbol, rid in sorted(chosen.items()):
        recorded = _decoded(runs[rid]["checksums"]).get(symbol, {})
        for interval in INTERVALS:
            if interval in recorded:
                digest_ = SeriesDigest.from_json(recorded[interval])
                checks.append(SeriesCheck(symbol, interval, rid, digest_))
    return checks, runs


_COUNTS_SQL = """
SELECT symbol, interval, count(*) AS rows, extract(epoch FROM min(time))::int8 AS first,
    extract(epoch FROM max(time))::int8 AS last
FROM {table}
WHERE symbol = ANY($1::text[]) AND (
    (interval = '1d' AND time >= to_timestamp($2) AND time < to_timestamp($3))
    OR (interval = '5m' AND time >= to_timestamp($4) AND time < to_timestamp($5)))
GROUP BY symbol, interval
"""


async def check_run(conn: asyncpg.Connection, run_id: int, sample: int) -> list[str]:
    """The loader's own gate after a run: the count, first and last time of every series in the
    run's window (one grouped scan), and the full checksum of `sample` symbols.
    """
    checks, runs = await _reference(conn, None, run_id)
    if not checks:
        return []
    window = _window_of(_decoded(runs[run_id]["params"]))
    bounds = (*window.daily_range(), *window.intraday_range())
    symbols = sorted({c.symbol for c in checks})
    found: dict[str, dict[tuple[str, str], Any]] = {}
    for table in ("bars", "indicators"):
        rows = await conn.fetch(_COUNTS_SQL.format(table=table), symbols, *bounds)
        found[table] = {(r["symbol"], r["interval"]): r for r in rows}
    failures: list[str] = []
    for check in checks:
        name, recorded = f"{check.symbol} {check.interval}", check.recorded
        key = (check.symbol, check.interval)
        bars, indicators = found["bars"].get(key), found["indicators"].get(key)
        stored = (0, None, None) if bars is None else (bars["rows"], bars["first"], bars["last"])
        if stored != (recorded.rows, recorded.first, recorded.last):
            failures.append(
                f"{name}: {stored[0]} rows stored ({_when(stored[1])} → {_when(stored[2])}), "
                f"run #{run_id} loaded {recorded.rows} ({_when(recorded.first)} → "
                f"{_when(recorded.last)})"
            )
        if (0 if indicators is None else indicators["rows"]) != recorded.rows:
            failures.append(f"{name}: indicator rows missing for some of its {recorded.rows} bars")
    hashed = set(random.Random(run_id).sample(symbols, min(sample, len(symbols))))
    sampled = [c for c in checks if c.symbol in hashed]
    await stored_series(conn, sampled)
    for check in sampled:
        compare(check)
        failures.extend(check.mismatches)
    return failures


async def verify_async(
    symbols: tuple[str, ...] | None,
    executor: Executor | None,
    *,
    generator: bool = True,
    sample_symbols: int = SAMPLE_SYMBOLS,
    seed: int | None = None,
) -> VerifyReport:
    started = time.perf_counter()
    conn = await connect(database_url())
    try:
        await check_schema(conn)
        checks, runs = await _reference(conn, symbols)
        if not checks:
            which = f" for {', '.join(symbols)}" if symbols else ""
            raise LoadError(
                f"no completed load run{which}: nothing to verify",
                "./start.sh load-data",
                precondition=True,
            )
        if generator:
            await _with_generator(checks, runs, executor)
        await stored_series(conn, checks)
        for check in checks:
            compare(check)
        rng = random.Random(seed)
        all_symbols = sorted({c.symbol for c in checks})
        sampled = set(rng.sample(all_symbols, min(sample_symbols, len(all_symbols))))
        for check in checks:
            if check.symbol in sampled:
                await check_indicators(conn, check, rng)
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    return VerifyReport(runs=sorted(runs), series=checks, seconds=time.perf_counter() - started)


async def _with_generator(
    checks: list[SeriesCheck], runs: dict[int, asyncpg.Record], executor: Executor | None
) -> None:
    """Recompute the checksums of synthetic runs' symbols with the generator."""
    jobs: dict[str, tuple[int, str, Window]] = {}
    for check in checks:
        run = runs[check.run_id]
        if run["source"] == "synthetic" and run["seed"] is not None:
            window = _window_of(_decoded(run["params"]))
            jobs[check.symbol] = (int(run["seed"]), check.symbol, window)
    if not jobs:
        return
    loop = asyncio.get_running_loop()
    names = list(jobs)
    results = await asyncio.gather(
        *(loop.run_in_executor(executor, _generator_digests, jobs[name]) for name in names)
    )
    by_symbol = dict(zip(names, results, strict=True))
    for check in checks:
        if check.symbol in by_symbol:
            check.generator = by_symbol[check.symbol][check.interval]


def verify(
    symbols: tuple[str, ...] | None = None,
    *,
    generator: bool = True,
    workers: int | None = None,
    seed: int | None = None,
) -> VerifyReport:
    """Run verify-data and return its report (LoadError when there is nothing to verify)."""
    database_url()
    executor = worker_pool(worker_count(workers)) if generator else None
    try:
        return asyncio.run(verify_async(symbols, executor, generator=generator, seed=seed))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
