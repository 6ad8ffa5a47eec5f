"""The trading calendar, periods, intervals and bucketing shared by both backends.

Contract rules kept here so that the mock and production agree value for value:

- Daily bars sit at 00:00 UTC of each weekday; intraday bars are 5-minute bars of a fixed session
  14:30-21:00 UTC (78 a day), kept for the 60 calendar days ending on the as-of date.
- Larger intraday buckets align to the session open of each day (a 1h session has buckets at
  14:30, 15:30, ... 20:30, the last one 30 minutes long) and never cross days; `1wk` buckets are
  ISO weeks (Monday), `1mo` buckets calendar months; a bucket's time is its first bar's.
- Periods apply to the aggregated series: a window keeps the buckets with
  `time > latest - period`, latest being the last bucket's time. So `1h` of 5m bars is the last
  12 bars, and `1d` at 1h is the 7 buckets of the last session.
"""

from __future__ import annotations

import calendar as stdcal
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from market.bars import Bars, IntArray

ORIGIN = date(2005, 1, 3)
DEFAULT_ASOF = date(2026, 11, 20)
SESSION_OPEN_SECONDS = 14 * 3600 + 30 * 60
BAR_SECONDS = 300
BARS_PER_SESSION = 78
INTRADAY_DAYS = 60
MAX_CANDLES = 10_000
INTERVALS = ("5m", "15m", "30m", "1h", "4h", "1d", "1wk", "1mo")
INTRADAY_INTERVALS = ("5m", "15m", "30m", "1h", "4h")
PERIOD_UNITS = ("m", "h", "d", "wk", "mo", "y")
PERIOD_WORDS = ("ytd", "max")

DAY_SECONDS = 86_400
_UNIT_SECONDS = {
    "m": 60,
    "h": 3600,
    "d": DAY_SECONDS,
    "wk": 7 * DAY_SECONDS,
    "mo": 30 * DAY_SECONDS,
    "y": 365 * DAY_SECONDS,
}
_INTERVAL_SECONDS = {
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 4 * 3600,
    "1d": DAY_SECONDS,
    "1wk": 7 * DAY_SECONDS,
    "1mo": 30 * DAY_SECONDS,
}
_PERIOD_RE = re.compile(r"^([1-9][0-9]{0,3})(m|h|d|wk|mo|y)$")
_INTRADAY_LIMIT_SECONDS = INTRADAY_DAYS * DAY_SECONDS
_PERIOD_SYNTAX = (
    "a count 1-9999 followed by one of m, h, d, wk, mo, y (e.g. 30m, 5d, 1mo, 1y), or ytd, or max"
)
_INTERVAL_LIST = ", ".join(INTERVALS)


def iso_ms(epoch_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z` ("2026-11-21T22:18:45.123Z"), for wire timestamps."""
    total_ms = round(epoch_seconds * 1000)
    seconds, ms = divmod(total_ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def trading_days(start: date, end: date) -> list[date]:
    """The weekdays from `start` to `end`, both inclusive."""
    count = (end - start).days + 1
    days = (start + timedelta(days=i) for i in range(max(count, 0)))
    return [d for d in days if d.weekday() < 5]


def _weekday_array(start: date, end: date) -> NDArray[np.datetime64]:
    if end < start:
        return np.empty(0, dtype="datetime64[D]")
    days = np.arange(
        np.datetime64(start, "D"), np.datetime64(end, "D") + np.timedelta64(1, "D"), dtype="M8[D]"
    )
    return days[np.is_busday(days)]


def daily_times(start: date, end: date) -> IntArray:
    """Epoch seconds of 00:00 UTC of each trading day from `start` to `end` inclusive."""
    days = _weekday_array(start, end)
    return days.astype("datetime64[s]").astype(np.int64)


def intraday_days(asof: date, days: int = INTRADAY_DAYS) -> list[date]:
    """The trading days d with asof - days < d <= asof (the intraday window, as-of included)."""
    return trading_days(asof - timedelta(days=days - 1), asof)


def intraday_times(asof: date, days: int = INTRADAY_DAYS) -> IntArray:
    """Start times of the 5-minute bars of the intraday window: 78 a day, 14:30 to 20:55 UTC."""
    day_starts = daily_times(asof - timedelta(days=days - 1), asof)
    offsets = SESSION_OPEN_SECONDS + BAR_SECONDS * np.arange(BARS_PER_SESSION, dtype=np.int64)
    return (day_starts[:, None] + offsets[None, :]).ravel()


class CalendarError(ValueError):
    """An unknown or impossible period or interval; `field` names it, `accepted` says what is."""

    def __init__(self, field: str, value: str, accepted: str) -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"invalid {field} {value!r}: accepted {accepted}")


@dataclass(frozen=True, slots=True)
class Period:
    """A parsed period: `count` of `unit` (one of PERIOD_UNITS), or the words ytd/max (count 0)."""

    text: str
    count: int
    unit: str


def parse_period(text: str) -> Period:
    """Parse a period such as "5d", "1mo", "ytd" or "max"; CalendarError(field="period") if bad."""
    if text in PERIOD_WORDS:
        return Period(text=text, count=0, unit=text)
    match = _PERIOD_RE.match(text)
    if match is None:
        raise CalendarError("period", text, _PERIOD_SYNTAX)
    return Period(text=text, count=int(match.group(1)), unit=match.group(2))


def check_interval(text: str) -> str:
    """The interval itself if it is one of INTERVALS, else CalendarError(field="interval")."""
    if text not in INTERVALS:
        raise CalendarError("interval", text, f"one of {_INTERVAL_LIST}")
    return text


def base_interval(interval: str) -> str:
    """The stored series an interval is built from: "5m" for intraday, "1d" otherwise."""
    return "5m" if check_interval(interval) in INTRADAY_INTERVALS else "1d"


def nominal_seconds(period: Period) -> int | None:
    """The period's nominal length (mo = 30 days, y = 365 days); None for ytd and max."""
    unit_seconds = _UNIT_SECONDS.get(period.unit)
    return None if unit_seconds is None else period.count * unit_seconds


def interval_seconds(interval: str) -> int:
    """The interval's nominal length in seconds (1wk = 7 days, 1mo = 30 days)."""
    return _INTERVAL_SECONDS[check_interval(interval)]


def _accepted_for(interval: str) -> str:
    # The shortest period an interval serves is one bucket, spelled like the interval itself.
    if interval in INTRADAY_INTERVALS:
        return (
            f"for interval {interval}: periods from {interval} up to {INTRADAY_DAYS}d "
            f"(intraday history covers {INTRADAY_DAYS} days), or max"
        )
    return f"for interval {interval}: periods of at least {interval}, or ytd, or max"


def check_combination(period: Period, interval: str) -> None:
    """Refuse (CalendarError, field "period") a period the interval cannot serve.

    Intraday intervals serve periods up to 60 days (or max: the whole intraday history), never
    ytd; no interval serves a period shorter than one of its buckets.
    """
    check_interval(interval)
    length = nominal_seconds(period)
    if interval in INTRADAY_INTERVALS:
        too_long = period.unit == "ytd" or (length is not None and length > _INTRADAY_LIMIT_SECONDS)
        if too_long:
            raise CalendarError("period", period.text, _accepted_for(interval))
    if length is not None and length < interval_seconds(interval):
        raise CalendarError("period", period.text, _accepted_for(interval))


def _bucket_keys(time: IntArray, interval: str) -> IntArray:
    """A key per bar, equal for bars of the same bucket and increasing with time."""
    if interval in INTRADAY_INTERVALS:
        day = time // DAY_SECONDS
        slot = (time - day * DAY_SECONDS - SESSION_OPEN_SECONDS) // _INTERVAL_SECONDS[interval]
        # Keyed by (day, slot) so that a bucket never crosses into another day.
        return day * 1_000_000 + slot
    if interval == "1wk":
        # Epoch day 0 is a Thursday; shifting by 3 makes weeks start on Monday.
        return (time // DAY_SECONDS + 3) // 7
    if interval == "1mo":
        return time.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    return time // DAY_SECONDS


def aggregate(bars: Bars, interval: str) -> Bars:
    """Bars of the base interval (5m or 1d, see base_interval) grouped into `interval` buckets.

    Buckets are defined by time, not by count, so gaps only make buckets shorter. A bucket's
    time is its first bar's; open first, close last, high max, low min, volume sum.
    """
    check_interval(interval)
    if interval == base_interval(interval) or len(bars) == 0:
        return bars
    keys = _bucket_keys(bars.time, interval)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    ends = np.concatenate((starts[1:], [len(bars)])) - 1
    return Bars(
        time=bars.time[starts],
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends],
        volume=np.add.reduceat(bars.volume, starts),
    )


def _months_back(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) - months
    if index < 12:
        # Before year 1: datetime cannot say it, and no bar is that old anyway.
        return datetime.min.replace(tzinfo=UTC)
    year, month0 = divmod(index, 12)
    last_day = stdcal.monthrange(year, month0 + 1)[1]
    return moment.replace(year=year, month=month0 + 1, day=min(moment.day, last_day))


def window_start(latest: int, period: Period) -> int | None:
    """The exclusive lower bound of a period's window ending at `latest`; None for max.

    m/h/d/wk count seconds; mo and y count calendar months and years back from `latest` (day
    clamped to the month's end, time of day kept); ytd starts at Jan 1 00:00 UTC of latest's year.
    """
    if period.unit == "max":
        return None
    moment = datetime.fromtimestamp(latest, tz=UTC)
    if period.unit == "ytd":
        return int(datetime(moment.year, 1, 1, tzinfo=UTC).timestamp()) - 1
    if period.unit in ("mo", "y"):
        months = period.count * (12 if period.unit == "y" else 1)
        return int(_months_back(moment, months).timestamp())
    return latest - period.count * _UNIT_SECONDS[period.unit]


def select(bars: Bars, period: Period) -> Bars:
    """The bars of `period` counted back from the last bar (time > window_start); empty stays."""
    if len(bars) == 0:
        return bars
    start = window_start(int(bars.time[-1]), period)
    if start is None:
        return bars
    first = int(np.searchsorted(bars.time, start, side="right"))
    return bars.take(slice(first, None))
