"""Where the loader's bars come from: the synthetic generator, CSV files, or a provider.

A source turns a request (symbols, years, intraday days, as-of date) into a plan: one job per
symbol whose recipe yields that symbol's daily and 5-minute bars, plus the problems found while
planning. Recipes are small picklable objects, run in worker processes, so generating or
reading one symbol overlaps with writing another.

- `synthetic` (the default, offline): market/'s reference generator, so the database holds the
  very bars the mock serves for the same seed and as-of date.
- `csv:FOLDER`: Yahoo and Stooq files (see ops/loader/csvfiles.py for the layouts and the
  adjusted-price choice).
- A networked provider (Yahoo, Alpha Vantage, Polygon) plugs in by implementing `Provider`;
  `ProviderSource` does the rest. None is implemented: the loader is offline by design.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from contract.types import SYMBOL_PATTERN
from contract.universe import UNIVERSE
from market.bars import Bars
from market.calendar import ORIGIN
from market.history import daily_history, intraday_history
from ops.loader.csvfiles import Layout, ParsedFile, find_files, parse_file
from ops.loader.rows import (
    DAY_SECONDS,
    CheckedRows,
    Interval,
    Problem,
    RawRows,
    check_rows,
)

SourceKind = Literal["synthetic", "csv", "provider"]
_EPOCH = date(1970, 1, 1)


class SourceError(Exception):
    """A source that cannot be used at all (unknown name, missing folder); the message says why."""


def epoch_of(day: date) -> int:
    """Epoch seconds of 00:00 UTC of `day`."""
    return (day - _EPOCH).days * DAY_SECONDS


def years_back(asof: date, years: int) -> date:
    """The same calendar day `years` years before `asof` (29 February → 28 February)."""
    try:
        return asof.replace(year=asof.year - years)
    except ValueError:
        return asof.replace(year=asof.year - years, day=28)


@dataclass(frozen=True, slots=True)
class Window:
    """What a run loads: daily bars from `daily_from` to `asof`, and 5-minute bars of the
    `intraday_days` calendar days ending on `asof` (as market.calendar.intraday_days counts).
    """

    asof: date
    daily_from: date
    intraday_days: int

    @property
    def intraday_from(self) -> date:
        return self.asof - timedelta(days=max(self.intraday_days, 1) - 1)

    def daily_range(self) -> tuple[int, int]:
        """Epoch seconds [start, end) of the daily bars."""
        return epoch_of(self.daily_from), epoch_of(self.asof) + DAY_SECONDS

    def intraday_range(self) -> tuple[int, int]:
        """Epoch seconds [start, end) of the 5-minute bars (empty when intraday_days is 0)."""
        end = epoch_of(self.asof) + DAY_SECONDS
        return (end, end) if self.intraday_days <= 0 else (epoch_of(self.intraday_from), end)

    def to_json(self) -> dict[str, Any]:
        return {
            "asof": self.asof.isoformat(),
            "daily_from": self.daily_from.isoformat(),
            "intraday_days": self.intraday_days,
            "intraday_from": self.intraday_from.isoformat() if self.intraday_days > 0 else None,
        }


# 22 years reach back past the synthetic history's origin (2005-01-03) from the default as-of
# date, so production holds every bar the mock serves: the same data, the same answers.
DEFAULT_YEARS = 22


@dataclass(frozen=True, slots=True)
class Request:
    """What the operator asked for; None = the source's default (its symbols, its as-of date)."""

    symbols: tuple[str, ...] | None = None
    years: int = DEFAULT_YEARS
    intraday_days: int = 60
    asof: date | None = None


@dataclass(frozen=True, slots=True)
class SymbolSeries:
    """One symbol's checked bars of both stored intervals, and the problems found in them."""

    symbol: str
    daily: Bars
    intraday: Bars
    problems: list[Problem] = field(default_factory=list)

    def bars(self, interval: Interval) -> Bars:
        return self.daily if interval == "1d" else self.intraday


class Recipe(Protocol):
    """How a worker process obtains one symbol's series (picklable)."""

    def series(self) -> SymbolSeries: ...


@dataclass(frozen=True, slots=True)
class SymbolJob:
    symbol: str
    recipe: Recipe


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One CSV file as the run saw it."""

    file: str
    layout: Layout | None
    adjusted: bool | None
    data_lines: int
    problems: int

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "layout": self.layout,
            "adjusted": self.adjusted,
            "data_lines": self.data_lines,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """The jobs of a run, its window, and what planning found (problems not tied to a job)."""

    window: Window
    jobs: list[SymbolJob]
    problems: list[Problem] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a load run records about its source."""

    kind: SourceKind
    detail: str | None
    seed: int | None
    adjusted: bool


class Source(Protocol):
    """A source of history: describes itself and plans a run."""

    @property
    def info(self) -> SourceInfo: ...

    def plan(self, request: Request, executor: Executor | None = None) -> Plan: ...


def _normalise_symbols(symbols: Iterable[str]) -> tuple[str, ...]:
    pattern = re.compile(SYMBOL_PATTERN)
    out: list[str] = []
    for raw in symbols:
        symbol = raw.strip().upper()
        if not symbol:
            continue
        if not pattern.match(symbol):
            raise SourceError(f"{raw!r} is not a symbol: 1-12 characters of A-Z 0-9 . - ^")
        if symbol not in out:
            out.append(symbol)
    return tuple(out)


def parse_symbols(text: str | None) -> tuple[str, ...] | None:
    """`--symbols A,B` → ("A", "B"); None or empty → None (the source's default)."""
    if text is None or not text.strip():
        return None
    return _normalise_symbols(text.split(","))


def _checked(bars: Bars, interval: Interval, symbol: str, label: str) -> tuple[Bars, list[Problem]]:
    checked, problems = check_rows(RawRows.from_bars(bars), interval, file=label, symbol=symbol)
    return checked.bars, problems


# --- synthetic ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyntheticRecipe:
    """One symbol from market/'s generator, cut to the run's window."""

    seed: int
    symbol: str
    window: Window

    def series(self) -> SymbolSeries:
        full = daily_history(self.seed, self.symbol, self.window.asof)
        start = int(np.searchsorted(full.time, epoch_of(self.window.daily_from)))
        daily = full.take(slice(start, None))
        intraday = Bars.empty()
        if self.window.intraday_days > 0:
            intraday = intraday_history(
                self.seed, self.symbol, self.window.asof, self.window.intraday_days
            )
        # The generator's bars are consistent by construction; the checks are a cheap guard
        # against a change there failing a whole symbol on the table's constraints.
        daily, daily_problems = _checked(daily, "1d", self.symbol, "synthetic")
        intraday, intraday_problems = _checked(intraday, "5m", self.symbol, "synthetic")
        return SymbolSeries(self.symbol, daily, intraday, daily_problems + intraday_problems)


@dataclass(frozen=True, slots=True)
class SyntheticSource:
    """market/'s reference generator: `seed` and a default as-of date (MARKET_SEED/MARKET_ASOF).

    Its history starts on market.calendar.ORIGIN, so a daily window reaching further back is
    clipped there.
    """

    seed: int
    default_asof: date

    @property
    def info(self) -> SourceInfo:
        return SourceInfo(kind="synthetic", detail=None, seed=self.seed, adjusted=False)

    def window(self, request: Request) -> Window:
        asof = request.asof or self.default_asof
        if asof < ORIGIN:
            raise SourceError(f"as-of date {asof} is before the history's origin {ORIGIN}")
        start = max(ORIGIN, years_back(asof, request.years))
        return Window(asof=asof, daily_from=start, intraday_days=request.intraday_days)

    def plan(self, request: Request, executor: Executor | None = None) -> Plan:
        symbols = request.symbols or tuple(sorted(item.symbol for item in UNIVERSE))
        window = self.window(request)
        jobs = [SymbolJob(s, SyntheticRecipe(self.seed, s, window)) for s in symbols]
        return Plan(window=window, jobs=jobs)


# --- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InlineRecipe:
    """A series already read (CSV files are parsed while planning)."""

    value: SymbolSeries

    def series(self) -> SymbolSeries:
        return self.value


def _parse_one(args: tuple[Path, str, bool]) -> ParsedFile:
    return parse_file(*args)


def _merge(
    parts: list[tuple[str, CheckedRows]], interval: Interval, symbol: str
) -> tuple[Bars, list[Problem]]:
    """One (symbol, interval) from several files: the first file's row of a time wins."""
    if len(parts) == 1:
        return parts[0][1].bars, []
    files = np.concatenate(
        [np.full(len(rows.bars), i, dtype=np.int64) for i, (_, rows) in enumerate(parts)]
    )
    lines = np.concatenate([rows.lines for _, rows in parts])
    bars = Bars.concat([rows.bars for _, rows in parts])
    order = np.argsort(bars.time, kind="stable")
    times = bars.time[order]
    repeat = np.zeros(order.shape[0], dtype=bool)
    repeat[1:] = times[1:] == times[:-1]
    problems: list[Problem] = []
    kept_at: dict[int, int] = {}
    for i, is_repeat in zip(order.tolist(), repeat.tolist(), strict=True):
        t = int(bars.time[i])
        if not is_repeat:
            kept_at[t] = i
            continue
        first = kept_at[t]
        problems.append(
            Problem(
                "duplicate_date",
                f"{interval} bar at {np.datetime64(t, 's')} is also in "
                f"{parts[int(files[first])][0]} line {int(lines[first])} (that row is kept)",
                file=parts[int(files[i])][0],
                line=int(lines[i]),
                symbol=symbol,
            )
        )
    return bars.take(order[~repeat]), problems


def _in_range(bars: Bars, bounds: tuple[int, int]) -> Bars:
    lo = int(np.searchsorted(bars.time, bounds[0], side="left"))
    hi = int(np.searchsorted(bars.time, bounds[1], side="left"))
    return bars.take(slice(lo, hi))


@dataclass(frozen=True, slots=True)
class CsvSource:
    """Every CSV file under `folder` (see ops/loader/csvfiles.py); `adjusted` applies Yahoo's
    Adj Close to the prices. By default every symbol found is loaded; the as-of date defaults to
    the latest date in the files.
    """

    folder: Path
    adjusted: bool = False

    @property
    def info(self) -> SourceInfo:
        return SourceInfo(kind="csv", detail=str(self.folder), seed=None, adjusted=self.adjusted)

    def plan(self, request: Request, executor: Executor | None = None) -> Plan:
        if not self.folder.is_dir():
            raise SourceError(f"CSV folder {self.folder} does not exist or is not a folder")
        paths = find_files(self.folder)
        if not paths:
            raise SourceError(f"no .csv or .txt file under {self.folder}")
        tasks = [(p, str(p.relative_to(self.folder)), self.adjusted) for p in paths]
        mapper: Callable[..., Iterable[ParsedFile]] = executor.map if executor else map
        parsed = list(mapper(_parse_one, tasks))

        found: dict[tuple[str, Interval], list[tuple[str, CheckedRows]]] = defaultdict(list)
        for result in parsed:
            for key, rows in result.series.items():
                if len(rows.bars):
                    found[key].append((result.file, rows))
        latest = max(
            (int(rows.bars.time[-1]) for parts in found.values() for _, rows in parts),
            default=None,
        )
        if request.asof is not None:
            asof = request.asof
        elif latest is not None:
            asof = _EPOCH + timedelta(days=latest // DAY_SECONDS)
        else:
            asof = date.today()
        window = Window(asof, years_back(asof, request.years), request.intraday_days)

        available = sorted({symbol for symbol, _ in found})
        wanted = request.symbols or tuple(available)
        problems: list[Problem] = [
            Problem("missing_symbol", f"no file provides {symbol}", symbol=symbol, rows=0)
            for symbol in wanted
            if symbol not in available
        ]
        per_symbol: dict[str, list[Problem]] = defaultdict(list)
        for result in parsed:
            for problem in result.problems:
                if problem.symbol is None:
                    problems.append(problem)
                elif request.symbols is None or problem.symbol in request.symbols:
                    per_symbol[problem.symbol].append(problem)

        jobs: list[SymbolJob] = []
        for symbol in wanted:
            series: dict[Interval, Bars] = {}
            for interval in ("1d", "5m"):
                parts = found.get((symbol, interval), [])
                merged, duplicates = Bars.empty(), list[Problem]()
                if parts:
                    merged, duplicates = _merge(parts, interval, symbol)
                per_symbol[symbol].extend(duplicates)
                bounds = window.daily_range() if interval == "1d" else window.intraday_range()
                series[interval] = _in_range(merged, bounds)
            if not len(series["1d"]) and not len(series["5m"]):
                continue
            value = SymbolSeries(symbol, series["1d"], series["5m"], per_symbol.pop(symbol, []))
            jobs.append(SymbolJob(symbol, InlineRecipe(value)))
        # Problems of symbols that load nothing (a skipped file, no row in the window) stay
        # reported with the run.
        for symbol in sorted(per_symbol):
            problems.extend(per_symbol[symbol])
        files = [
            FileInfo(r.file, r.layout, r.adjusted, r.data_lines, len(r.problems)) for r in parsed
        ]
        return Plan(window=window, jobs=jobs, problems=problems, files=files)


# --- providers ------------------------------------------------------------------------------


class Provider(Protocol):
    """A networked history provider (Yahoo, Alpha Vantage, Polygon): not implemented here.

    An implementation answers daily bars (time 00:00 UTC of each trading date) and 5-minute bars
    (time = the bar's start, UTC) of one symbol for the dates from `start` to `end` inclusive,
    as market.bars.Bars in ascending time. It handles its own authentication, paging, retries and
    rate limits, and must be picklable (it runs in worker processes): keep credentials in fields
    read from the environment, not in open sessions. The loader checks every row it returns.
    """

    @property
    def name(self) -> str: ...

    @property
    def adjusted(self) -> bool: ...

    def daily(self, symbol: str, start: date, end: date) -> Bars: ...

    def intraday(self, symbol: str, start: date, end: date) -> Bars: ...


@dataclass(frozen=True, slots=True)
class ProviderRecipe:
    provider: Provider
    symbol: str
    window: Window

    def series(self) -> SymbolSeries:
        w = self.window
        daily = self.provider.daily(self.symbol, w.daily_from, w.asof)
        intraday = Bars.empty()
        if w.intraday_days > 0:
            intraday = self.provider.intraday(self.symbol, w.intraday_from, w.asof)
        label = self.provider.name
        daily, daily_problems = _checked(daily, "1d", self.symbol, label)
        intraday, intraday_problems = _checked(intraday, "5m", self.symbol, label)
        daily = _in_range(daily, w.daily_range())
        intraday = _in_range(intraday, w.intraday_range())
        return SymbolSeries(self.symbol, daily, intraday, daily_problems + intraday_problems)


@dataclass(frozen=True, slots=True)
class ProviderSource:
    """Any `Provider` as a loader source; symbols default to the contract's universe."""

    provider: Provider
    default_asof: date

    @property
    def info(self) -> SourceInfo:
        return SourceInfo(
            kind="provider",
            detail=self.provider.name,
            seed=None,
            adjusted=self.provider.adjusted,
        )

    def plan(self, request: Request, executor: Executor | None = None) -> Plan:
        asof = request.asof or self.default_asof
        window = Window(asof, years_back(asof, request.years), request.intraday_days)
        symbols = request.symbols or tuple(sorted(item.symbol for item in UNIVERSE))
        jobs = [SymbolJob(s, ProviderRecipe(self.provider, s, window)) for s in symbols]
        return Plan(window=window, jobs=jobs)


# --- choosing one ---------------------------------------------------------------------------

NETWORKED = ("yahoo", "alphavantage", "alpha-vantage", "polygon")


def parse_source(spec: str, *, seed: int, asof: date, adjusted: bool) -> Source:
    """`synthetic` or `csv:FOLDER` → the source; SourceError naming what is accepted otherwise."""
    text = spec.strip()
    if text == "synthetic":
        if adjusted:
            raise SourceError("--adjusted applies to CSV files with Adj Close, not to synthetic")
        return SyntheticSource(seed=seed, default_asof=asof)
    if text.startswith("csv:") and text[4:].strip():
        return CsvSource(folder=Path(text[4:].strip()).expanduser().resolve(), adjusted=adjusted)
    if text.lower() in NETWORKED:
        raise SourceError(
            f"source {text!r}: no networked provider is implemented (the loader is offline); "
            "implement ops.loader.sources.Provider, or export its data as CSV and use csv:FOLDER"
        )
    raise SourceError(f"source {text!r}: accepted synthetic or csv:FOLDER")


def symbols_of(jobs: Sequence[SymbolJob]) -> list[str]:
    return [job.symbol for job in jobs]
