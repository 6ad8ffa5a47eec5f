"""One symbol made ready for the database, in a worker process: bars, indicators, checksums.

The rows are encoded straight into PostgreSQL's binary COPY format with numpy (a structured
array per series: every field is fixed-width, big-endian), so the writer only streams bytes and
the main process never builds a Python object per row. Indicators that are undefined (NaN) go in
as NaN and become NULL in the upsert (see ops/loader/copy.py).

The checksum of a series is the md5 of its rows in time order, each as 48 bytes: epoch seconds
(int8), open, high, low, close (float8) and volume (int8), big-endian. PostgreSQL computes the
same from stored rows with int8send/float8send (ops/loader/verify.py), so a load and a
verification compare bit for bit.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market.bars import Bars, IntArray
from market.calendar import iso_ms
from market.indicators import INDICATOR_NAMES, IndicatorFrame, compute_indicators
from ops.loader.rows import INTERVALS, Interval, Problem
from ops.loader.sources import SymbolJob

# PostgreSQL's timestamps count microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH_SECONDS = 946_684_800
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"

BAR_COLUMNS = ("symbol", "interval", "time", "open", "high", "low", "close", "volume")
INDICATOR_COLUMNS = ("symbol", "interval", "time", *INDICATOR_NAMES)

_DIGEST_DTYPE = np.dtype(
    [
        ("time", ">i8"),
        ("open", ">f8"),
        ("high", ">f8"),
        ("low", ">f8"),
        ("close", ">f8"),
        ("volume", ">i8"),
    ]
)


def _row_dtype(symbol: bytes, interval: bytes, values: list[tuple[str, str]]) -> np.dtype[Any]:
    """A binary COPY tuple: field count, then (length, value) per column."""
    fields: list[tuple[str, str]] = [
        ("count", ">i2"),
        ("symbol_len", ">i4"),
        ("symbol", f"S{len(symbol)}"),
        ("interval_len", ">i4"),
        ("interval", f"S{len(interval)}"),
    ]
    for name, kind in values:
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


def _pg_time(epoch: IntArray) -> IntArray:
    return np.asarray((epoch - PG_EPOCH_SECONDS) * 1_000_000, dtype=np.int64)


def _start(
    symbol: str, interval: str, values: list[tuple[str, str]], n: int
) -> np.ndarray[Any, Any]:
    sym, ivl = symbol.encode(), interval.encode()
    rows = np.empty(n, dtype=_row_dtype(sym, ivl, values))
    rows["count"] = 2 + len(values)
    rows["symbol_len"] = len(sym)
    rows["symbol"] = sym
    rows["interval_len"] = len(ivl)
    rows["interval"] = ivl
    for name, _ in values:
        rows[f"{name}_len"] = 8
    return rows


def bar_tuples(symbol: str, interval: str, bars: Bars) -> bytes:
    """The bars as binary COPY tuples (no header) for columns BAR_COLUMNS."""
    values = [("time", ">i8")] + [(c, ">f8") for c in ("open", "high", "low", "close")]
    values.append(("volume", ">i8"))
    rows = _start(symbol, interval, values, len(bars))
    rows["time"] = _pg_time(bars.time)
    for name in ("open", "high", "low", "close", "volume"):
        rows[name] = getattr(bars, name)
    return rows.tobytes()


def indicator_tuples(symbol: str, interval: str, times: IntArray, frame: IndicatorFrame) -> bytes:
    """The indicators as binary COPY tuples (no header) for columns INDICATOR_COLUMNS."""
    values = [("time", ">i8")] + [(name, ">f8") for name in INDICATOR_NAMES]
    rows = _start(symbol, interval, values, int(times.shape[0]))
    rows["time"] = _pg_time(times)
    for name in INDICATOR_NAMES:
        rows[name] = getattr(frame, name)
    return rows.tobytes()


def copy_stream(tuples: list[bytes]) -> bytes:
    """A complete binary COPY stream from tuple blocks."""
    return b"".join([COPY_HEADER, *tuples, COPY_TRAILER])


@dataclass(frozen=True, slots=True)
class SeriesDigest:
    """Count, first and last time (epoch seconds) and checksum of one (symbol, interval)."""

    rows: int
    first: int | None
    last: int | None
    md5: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "first": None if self.first is None else iso_ms(self.first),
            "last": None if self.last is None else iso_ms(self.last),
            "first_epoch": self.first,
            "last_epoch": self.last,
            "md5": self.md5,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> SeriesDigest:
        return SeriesDigest(
            rows=int(data["rows"]),
            first=data.get("first_epoch"),
            last=data.get("last_epoch"),
            md5=str(data["md5"]),
        )


def digest(bars: Bars) -> SeriesDigest:
    """The series' checksum as defined above (md5 of nothing for an empty series)."""
    rows = np.empty(len(bars), dtype=_DIGEST_DTYPE)
    for name in _DIGEST_DTYPE.names or ():
        rows[name] = getattr(bars, name)
    n = len(bars)
    return SeriesDigest(
        rows=n,
        first=int(bars.time[0]) if n else None,
        last=int(bars.time[-1]) if n else None,
        md5=hashlib.md5(rows.tobytes()).hexdigest(),
    )


def symbol_checksum(digests: dict[Interval, SeriesDigest]) -> str:
    """One fingerprint of a symbol's stored intervals (load_run_symbols.checksum)."""
    text = ";".join(f"{i}:{digests[i].md5}" for i in INTERVALS if i in digests)
    return hashlib.md5(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Payload:
    """What the writer streams and records for one symbol."""

    symbol: str
    daily_rows: int
    intraday_rows: int
    bars_copy: bytes
    indicators_copy: bytes
    digests: dict[Interval, SeriesDigest]
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.daily_rows + self.intraday_rows


def prepare(job: SymbolJob) -> Payload:
    """Obtain one symbol's series, compute its indicators over the whole loaded history of each
    interval, and encode everything (run in a worker process).
    """
    started = time.perf_counter()
    series = job.recipe.series()
    bar_blocks: list[bytes] = []
    indicator_blocks: list[bytes] = []
    digests: dict[Interval, SeriesDigest] = {}
    for interval in INTERVALS:
        bars = series.bars(interval)
        digests[interval] = digest(bars)
        if not len(bars):
            continue
        bar_blocks.append(bar_tuples(series.symbol, interval, bars))
        frame = compute_indicators(bars)
        indicator_blocks.append(indicator_tuples(series.symbol, interval, bars.time, frame))
    return Payload(
        symbol=series.symbol,
        daily_rows=len(series.daily),
        intraday_rows=len(series.intraday),
        bars_copy=copy_stream(bar_blocks),
        indicators_copy=copy_stream(indicator_blocks),
        digests=digests,
        problems=series.problems,
        seconds=time.perf_counter() - started,
    )
