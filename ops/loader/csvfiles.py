"""CSV history files: Yahoo, Stooq per symbol, and Stooq bulk, detected from the header.

- Yahoo (`Date,Open,High,Low,Close,Adj Close,Volume`): one symbol per file, named SYMBOL.csv;
  daily bars. `Close` is the split-adjusted close Yahoo shows; `Adj Close` also folds in
  dividends. By default the prices are stored as given (adjusted = false); with `adjusted`, open,
  high, low and close are all multiplied by Adj Close / Close, so the bars are consistent
  dividend-adjusted bars (adjusted = true). Volume is stored as given.
- Stooq per symbol (`Date,Open,High,Low,Close,Volume`, e.g. `aapl.us.txt`): daily bars; Stooq
  publishes one (already adjusted) price series, stored as given.
- Stooq bulk (`<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>`): any
  number of tickers per file; period `D` gives daily bars, `5` five-minute bars. `<TIME>` is read
  as the bar's start in UTC (HHMMSS): convert a file in another zone before loading it.

Daily bars are stored at 00:00 UTC of their date. A ticker or file name `X.US` is the symbol `X`
(Stooq's market suffix); symbols are upper-cased and must match the contract's symbol pattern.
Columns are found by name, in any order; extra columns are ignored. Line numbers are 1-based
physical lines, the header being line 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np

from contract.types import SYMBOL_PATTERN
from ops.loader.rows import (
    DAY_SECONDS,
    CheckedRows,
    Interval,
    Problem,
    ProblemKind,
    RawRows,
    check_rows,
)

Layout = Literal["yahoo", "stooq", "stooq-bulk"]
FILE_SUFFIXES = (".csv", ".txt")

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MISSING = {"", "null", "nan", "na", "n/a", "-"}

# Required columns of each layout, by normalised header name.
_DAILY_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_BULK_COLUMNS = ("<ticker>", "<per>", "<date>", "<time>", "<open>", "<high>", "<low>", "<close>")
_BULK_VOLUME = "<vol>"
_PERIODS: dict[str, Interval] = {"D": "1d", "5": "5m"}


def symbol_from_name(raw: str) -> str | None:
    """`aapl.us` → AAPL, `BRK-B` → BRK-B; None when it is not a valid symbol."""
    text = raw.strip().upper()
    if text.endswith(".US"):
        text = text[: -len(".US")]
    return text if _SYMBOL_RE.match(text) else None


def _normalise(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def detect_layout(header: list[str]) -> tuple[Layout | None, list[str]]:
    """The layout a header announces, and the required columns it lacks.

    (None, []) when the header is neither a Yahoo/Stooq daily header nor a Stooq bulk one.
    """
    names = {_normalise(h) for h in header}
    if any(n.startswith("<") for n in names):
        missing = [c for c in (*_BULK_COLUMNS, _BULK_VOLUME) if c not in names]
        return "stooq-bulk", [m.upper() for m in missing]
    if "date" not in names:
        return None, []
    layout: Layout = "yahoo" if "adj close" in names else "stooq"
    return layout, [c.title() for c in _DAILY_COLUMNS if c not in names]


@dataclass(slots=True)
class ParsedFile:
    """One file's good rows per (symbol, interval), its problems and what it was."""

    file: str
    layout: Layout | None
    adjusted: bool | None
    data_lines: int = 0
    series: dict[tuple[str, Interval], CheckedRows] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class _RowError(Exception):
    def __init__(self, kind: ProblemKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _number(text: str, column: str) -> float:
    value = text.strip()
    if value.lower() in _MISSING:
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise _RowError("unparseable_number", f"{column} {text!r} is not a number") from None


def _daily_epoch(text: str) -> int:
    value = text.strip()
    try:
        # Only the date matters for a daily bar, even when a time and zone follow it.
        day = date.fromisoformat(value[:10])
    except ValueError:
        raise _RowError("unparseable_date", f"date {text!r} is not YYYY-MM-DD") from None
    if len(value) > 10 and value[10] not in " T":
        raise _RowError("unparseable_date", f"date {text!r} is not YYYY-MM-DD")
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_SECONDS


def _bulk_epoch(day_text: str, time_text: str, interval: Interval) -> int:
    day_raw, time_raw = day_text.strip(), time_text.strip()
    try:
        if len(day_raw) != 8 or not day_raw.isdigit():
            raise ValueError(day_raw)
        day = date(int(day_raw[:4]), int(day_raw[4:6]), int(day_raw[6:]))
    except ValueError:
        raise _RowError("unparseable_date", f"<DATE> {day_text!r} is not YYYYMMDD") from None
    epoch = (day.toordinal() - _EPOCH_ORDINAL) * DAY_SECONDS
    if interval == "1d":
        return epoch
    padded = time_raw.zfill(6)
    if len(padded) != 6 or not padded.isdigit():
        raise _RowError("unparseable_date", f"<TIME> {time_text!r} is not HHMMSS")
    hours, minutes, seconds = int(padded[:2]), int(padded[2:4]), int(padded[4:])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise _RowError("unparseable_date", f"<TIME> {time_text!r} is not a time of day")
    return epoch + hours * 3600 + minutes * 60 + seconds


class _Collector:
    """Rows of one (symbol, interval) as they are read, kept as plain lists until the end."""

    __slots__ = ("close", "high", "lines", "low", "open", "time", "volume")

    def __init__(self) -> None:
        self.time: list[int] = []
        self.open: list[float] = []
        self.high: list[float] = []
        self.low: list[float] = []
        self.close: list[float] = []
        self.volume: list[float] = []
        self.lines: list[int] = []

    def add(self, line: int, t: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        self.time.append(t)
        self.open.append(o)
        self.high.append(h)
        self.low.append(lo)
        self.close.append(c)
        self.volume.append(v)
        self.lines.append(line)

    def rows(self) -> RawRows:
        return RawRows(
            time=np.array(self.time, dtype=np.int64),
            open=np.array(self.open, dtype=np.float64),
            high=np.array(self.high, dtype=np.float64),
            low=np.array(self.low, dtype=np.float64),
            close=np.array(self.close, dtype=np.float64),
            volume=np.array(self.volume, dtype=np.float64),
            lines=np.array(self.lines, dtype=np.int64),
        )


def _is_blank(row: list[str]) -> bool:
    return not any(cell.strip() for cell in row)


def parse_file(path: Path, name: str, adjusted: bool = False) -> ParsedFile:
    """Read one CSV file: its good rows per (symbol, interval) and every problem with its line.

    Never raises for bad content: a file that cannot be used at all gives one problem and no
    rows. `name` is how the file is named in reports (its path inside the loaded folder).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return ParsedFile(name, None, None, problems=[Problem("unreadable", str(exc), file=name)])
    reader = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""))
    try:
        numbered = [(reader.line_num, row) for row in reader if not _is_blank(row)]
    except csv.Error as exc:  # e.g. a field over the csv module's limit: no CSV we can trust
        detail = f"not readable as CSV at line {reader.line_num}: {exc}; the file is skipped"
        problem = Problem("unreadable", detail, name, reader.line_num, rows=0)
        return ParsedFile(name, None, None, problems=[problem])
    if not numbered:
        return ParsedFile(
            name, None, None, problems=[Problem("empty_file", "empty file", name, rows=0)]
        )
    (header_line, header), data = numbered[0], numbered[1:]
    layout, missing = detect_layout(header)
    if layout is None:
        shown = ",".join(header)[:80]
        detail = f"header {shown!r} is neither Yahoo, Stooq nor Stooq bulk; the file is skipped"
        problem = Problem("unknown_layout", detail, name, header_line, rows=len(data))
        return ParsedFile(name, None, None, data_lines=len(data), problems=[problem])
    file_symbol: str | None = None
    if layout != "stooq-bulk":
        file_symbol = symbol_from_name(path.name.rsplit(".", 1)[0])
    parsed = ParsedFile(name, layout, adjusted if layout == "yahoo" else None, len(data))
    if missing:
        detail = f"{layout} header lacks {', '.join(missing)}; the file is skipped"
        parsed.problems.append(
            Problem("missing_columns", detail, name, header_line, file_symbol, len(data))
        )
        return parsed
    if layout != "stooq-bulk" and file_symbol is None:
        detail = f"file name {path.name!r} is not SYMBOL.csv with a valid symbol; skipped"
        parsed.problems.append(Problem("bad_symbol", detail, name, None, None, len(data)))
        return parsed
    if not data:
        parsed.problems.append(
            Problem("empty_file", "a header and no data rows", name, header_line, file_symbol, 0)
        )
        return parsed

    # A file cut short (a failed download, a full disk) ends without a newline, mid-row.
    ends_cleanly = raw.rstrip(b" \t").endswith((b"\n", b"\r"))
    index = {_normalise(h): i for i, h in enumerate(header)}
    collectors: dict[tuple[str, Interval], _Collector] = defaultdict(_Collector)
    unsupported: dict[tuple[str, str], list[int]] = defaultdict(list)
    read = _read_bulk if layout == "stooq-bulk" else _read_daily
    last = len(data) - 1
    for position, (line, row) in enumerate(data):
        try:
            if len(row) != len(header):
                raise _RowError(
                    "wrong_field_count", f"{len(row)} fields where the header has {len(header)}"
                )
            key, values = read(row, index, file_symbol, adjusted)
        except _RowError as exc:
            kind, detail = exc.kind, exc.detail
            if position == last and not ends_cleanly:
                kind = "truncated"
                detail = f"the file ends in the middle of line {line} ({exc.detail})"
            symbol = file_symbol
            if layout == "stooq-bulk" and len(row) > index["<ticker>"]:
                symbol = symbol_from_name(row[index["<ticker>"]])
            parsed.problems.append(Problem(kind, detail, name, line, symbol))
            continue
        if isinstance(key, str):
            unsupported[(key, symbol_from_name(row[index["<ticker>"]]) or "")].append(line)
            continue
        collectors[key].add(line, *values)
    for (period, symbol), lines in sorted(unsupported.items()):
        detail = f"period {period!r} is not loaded (only D and 5): {len(lines)} rows skipped"
        parsed.problems.append(
            Problem("unsupported_period", detail, name, lines[0], symbol or None, len(lines))
        )
    for (symbol, interval), collector in sorted(collectors.items()):
        checked, problems = check_rows(collector.rows(), interval, file=name, symbol=symbol)
        parsed.series[(symbol, interval)] = checked
        parsed.problems.extend(problems)
    parsed.problems.sort(key=lambda p: p.line or 0)
    return parsed


_Values = tuple[int, float, float, float, float, float]


def _read_daily(
    row: list[str], index: dict[str, int], symbol: str | None, adjusted: bool
) -> tuple[tuple[str, Interval], _Values]:
    assert symbol is not None
    t = _daily_epoch(row[index["date"]])
    o = _number(row[index["open"]], "Open")
    h = _number(row[index["high"]], "High")
    lo = _number(row[index["low"]], "Low")
    c = _number(row[index["close"]], "Close")
    v = _number(row[index["volume"]], "Volume")
    if adjusted and "adj close" in index:
        # One factor for all four prices keeps their order (high >= close ...) exact.
        ratio = _number(row[index["adj close"]], "Adj Close") / c
        o, h, lo, c = o * ratio, h * ratio, lo * ratio, c * ratio
    return (symbol, "1d"), (t, o, h, lo, c, v)


def _read_bulk(
    row: list[str], index: dict[str, int], symbol: str | None, adjusted: bool
) -> tuple[tuple[str, Interval] | str, _Values]:
    period = row[index["<per>"]].strip().upper()
    interval = _PERIODS.get(period)
    if interval is None:
        return period, (0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ticker = row[index["<ticker>"]]
    found = symbol_from_name(ticker)
    if found is None:
        raise _RowError("bad_symbol", f"<TICKER> {ticker!r} is not a valid symbol")
    t = _bulk_epoch(row[index["<date>"]], row[index["<time>"]], interval)
    o = _number(row[index["<open>"]], "<OPEN>")
    h = _number(row[index["<high>"]], "<HIGH>")
    lo = _number(row[index["<low>"]], "<LOW>")
    c = _number(row[index["<close>"]], "<CLOSE>")
    v = _number(row[index[_BULK_VOLUME]], "<VOL>")
    return (found, interval), (t, o, h, lo, c, v)


def find_files(folder: Path) -> list[Path]:
    """The CSV files under `folder` (recursively), hidden ones excluded, in a stable order."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in FILE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
