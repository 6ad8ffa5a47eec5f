"""Bad-row checks shared by every source, and the problems they report.

The bars table refuses inconsistent rows with CHECK constraints, and one refused row would fail a
whole symbol's COPY. So every row is checked here first: a bad one is skipped and reported with
its file and line, and the symbol's other rows load.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from market.bars import Bars, FloatArray, IntArray

ProblemKind = Literal[
    "empty_file",
    "unreadable",
    "unknown_layout",
    "missing_columns",
    "wrong_field_count",
    "truncated",
    "unparseable_date",
    "unparseable_number",
    "bad_symbol",
    "unsupported_period",
    "nan",
    "non_positive_price",
    "high_below_low",
    "ohlc_inconsistent",
    "negative_volume",
    "off_grid_time",
    "duplicate_date",
    "missing_symbol",
    "more",
]

Interval = Literal["1d", "5m"]
INTERVALS: tuple[Interval, ...] = ("1d", "5m")
DAY_SECONDS = 86_400
BAR_SECONDS = 300

# How many problems of one kind per file are listed; the rest are counted in one "more" entry.
LISTED_PER_KIND = 20


@dataclass(frozen=True, slots=True)
class Problem:
    """One reported problem: a skipped row (with its line), a skipped file, or a missing symbol.

    `rows` is how many data rows it made the loader skip (0 for a note that skipped nothing).
    """

    kind: ProblemKind
    detail: str
    file: str | None = None
    line: int | None = None
    symbol: str | None = None
    rows: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Problem:
        return Problem(
            kind=data["kind"],
            detail=str(data["detail"]),
            file=data.get("file"),
            line=data.get("line"),
            symbol=data.get("symbol"),
            rows=int(data.get("rows", 1)),
        )

    def where(self) -> str:
        """`file:line`, `file`, or the symbol, for messages."""
        if self.file and self.line is not None:
            return f"{self.file}:{self.line}"
        return self.file or self.symbol or "-"


def skipped_rows(problems: list[Problem]) -> int:
    return sum(p.rows for p in problems)


def capped(problems: list[Problem], per_kind: int = LISTED_PER_KIND) -> list[Problem]:
    """The problems with at most `per_kind` listed per (file, kind); one "more" entry per excess.

    The "more" entry carries the skipped rows of those not listed, so the sum stays exact.
    """
    listed: list[Problem] = []
    seen: Counter[tuple[str | None, str]] = Counter()
    extra_rows: Counter[tuple[str | None, str]] = Counter()
    extra_count: Counter[tuple[str | None, str]] = Counter()
    symbols: dict[tuple[str | None, str], str | None] = {}
    for problem in problems:
        key: tuple[str | None, str] = (problem.file, problem.kind)
        seen[key] += 1
        if problem.kind == "more" or seen[key] <= per_kind:
            listed.append(problem)
        else:
            extra_rows[key] += problem.rows
            extra_count[key] += 1
            symbols.setdefault(key, problem.symbol)
    for (file, kind), count in extra_count.items():
        listed.append(
            Problem(
                kind="more",
                detail=f"{count} more {kind} problems not listed",
                file=file,
                symbol=symbols[(file, kind)],
                rows=extra_rows[(file, kind)],
            )
        )
    return listed


@dataclass(frozen=True, slots=True)
class RawRows:
    """Rows as read, before any check: floats may be NaN, volume is still a float.

    `lines` are the 1-based line numbers in `file` (or row numbers for a provider).
    """

    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    lines: IntArray

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def take(self, index: IntArray | slice) -> RawRows:
        return RawRows(
            time=self.time[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
            lines=self.lines[index],
        )

    @staticmethod
    def from_bars(bars: Bars) -> RawRows:
        """A source's bars as rows numbered 1..n, to go through the same checks."""
        return RawRows(
            time=np.asarray(bars.time, dtype=np.int64),
            open=np.asarray(bars.open, dtype=np.float64),
            high=np.asarray(bars.high, dtype=np.float64),
            low=np.asarray(bars.low, dtype=np.float64),
            close=np.asarray(bars.close, dtype=np.float64),
            volume=np.asarray(bars.volume, dtype=np.float64),
            lines=np.arange(1, len(bars) + 1, dtype=np.int64),
        )

    @staticmethod
    def concat(parts: list[RawRows]) -> RawRows:
        if not parts:
            return RawRows.from_bars(Bars.empty())
        return RawRows(
            time=np.concatenate([p.time for p in parts]),
            open=np.concatenate([p.open for p in parts]),
            high=np.concatenate([p.high for p in parts]),
            low=np.concatenate([p.low for p in parts]),
            close=np.concatenate([p.close for p in parts]),
            volume=np.concatenate([p.volume for p in parts]),
            lines=np.concatenate([p.lines for p in parts]),
        )


@dataclass(frozen=True, slots=True)
class CheckedRows:
    """Good rows in ascending time order, with the line each came from."""

    bars: Bars
    lines: IntArray


_PRICE_COLUMNS = ("open", "high", "low", "close")


def _describe(columns: list[str], values: list[float]) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(columns, values, strict=True))


def check_rows(
    rows: RawRows, interval: Interval, *, file: str | None, symbol: str | None
) -> tuple[CheckedRows, list[Problem]]:
    """Skip the rows the bars table would refuse, or that make no sense, and say why.

    Each bad row is reported once, with the first reason found, in this order: NaN or missing
    value, non-positive price, high < low, open or close outside [low, high], negative volume,
    a time off the interval's grid, a time already seen (the first occurrence is kept).
    """
    n = len(rows)
    problems: list[Problem] = []
    bad = np.zeros(n, dtype=bool)
    prices = {name: getattr(rows, name) for name in _PRICE_COLUMNS}

    def flag(mask: np.ndarray[Any, np.dtype[np.bool_]], kind: ProblemKind, why: str) -> None:
        fresh = mask & ~bad
        for i in np.flatnonzero(fresh).tolist():
            values = [float(prices[c][i]) for c in _PRICE_COLUMNS] + [float(rows.volume[i])]
            detail = f"{why}: {_describe([*_PRICE_COLUMNS, 'volume'], values)}"
            problems.append(
                Problem(kind, detail, file=file, line=int(rows.lines[i]), symbol=symbol)
            )
        bad[fresh] = True

    finite = np.ones(n, dtype=bool)
    for column in (*prices.values(), rows.volume):
        finite &= np.isfinite(column)
    flag(~finite, "nan", "missing or NaN value")
    with np.errstate(invalid="ignore"):
        non_positive = np.zeros(n, dtype=bool)
        for name in _PRICE_COLUMNS:
            non_positive |= ~(prices[name] > 0)
        flag(non_positive, "non_positive_price", "price not above 0")
        flag(rows.high < rows.low, "high_below_low", "high below low")
        outside = (
            (rows.open > rows.high)
            | (rows.open < rows.low)
            | (rows.close > rows.high)
            | (rows.close < rows.low)
        )
        flag(outside, "ohlc_inconsistent", "open or close outside [low, high]")
        flag(rows.volume < 0, "negative_volume", "negative volume")
    grid = DAY_SECONDS if interval == "1d" else BAR_SECONDS
    flag(rows.time % grid != 0, "off_grid_time", f"time not on the {interval} grid")

    good = np.flatnonzero(~bad)
    # A stable sort keeps the first of equal times first: the first occurrence wins.
    order = good[np.argsort(rows.time[good], kind="stable")]
    times = rows.time[order]
    repeat = np.zeros(order.shape[0], dtype=bool)
    if order.shape[0] > 1:
        repeat[1:] = times[1:] == times[:-1]
    if repeat.any():
        first_line: dict[int, int] = {}
        for i, is_repeat in zip(order.tolist(), repeat.tolist(), strict=True):
            t = int(rows.time[i])
            if not is_repeat:
                first_line[t] = int(rows.lines[i])
                continue
            problems.append(
                Problem(
                    "duplicate_date",
                    f"time {_iso(t)} already on line {first_line[t]} (that row is kept)",
                    file=file,
                    line=int(rows.lines[i]),
                    symbol=symbol,
                )
            )
        order = order[~repeat]
    problems.sort(key=lambda p: p.line or 0)
    bars = Bars(
        time=rows.time[order],
        open=rows.open[order],
        high=rows.high[order],
        low=rows.low[order],
        close=rows.close[order],
        volume=np.rint(rows.volume[order]).astype(np.int64),
    )
    return CheckedRows(bars=bars, lines=rows.lines[order]), problems


def _iso(epoch: int) -> str:
    day, seconds = divmod(epoch, DAY_SECONDS)
    text = str(np.datetime64(day, "D"))
    if seconds:
        text += f" {seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
    return text


def with_file(problems: list[Problem], file: str) -> list[Problem]:
    """The problems attributed to `file` (a provider's rows get its name)."""
    return [replace(p, file=file) for p in problems]
