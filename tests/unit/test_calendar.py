"""The trading calendar: periods, intervals, buckets and windows as the contract states them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from market.bars import Bars, IntArray
from market.calendar import (
    BARS_PER_SESSION,
    INTERVALS,
    CalendarError,
    Period,
    aggregate,
    base_interval,
    check_combination,
    check_interval,
    daily_times,
    interval_seconds,
    intraday_days,
    intraday_times,
    iso_ms,
    nominal_seconds,
    parse_period,
    select,
    trading_days,
    window_start,
)


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def bars_at(times: IntArray) -> Bars:
    """Bars whose prices count up (open i, close i + 0.5) so that buckets can be checked."""
    n = times.shape[0]
    base = np.arange(n, dtype=np.float64) + 100.0
    return Bars(
        time=times.astype(np.int64),
        open=base,
        high=base + 1.0 + (np.arange(n) % 3),
        low=base - 1.0 - (np.arange(n) % 2),
        close=base + 0.5,
        volume=np.arange(1, n + 1, dtype=np.int64),
    )


def hours(times: IntArray) -> list[str]:
    return [datetime.fromtimestamp(int(t), tz=UTC).strftime("%H:%M") for t in times]


# --- timestamps and days -----------------------------------------------------------------


def test_iso_ms_is_utc_with_milliseconds_and_z() -> None:
    at = epoch(2026, 11, 21, 22, 18) + 45.123
    assert iso_ms(at) == "2026-11-21T22:18:45.123Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(59.9996) == "1970-01-01T00:01:00.000Z"


def test_trading_days_are_weekdays_inclusive() -> None:
    # 2026-11-16 is a Monday; the 21st and 22nd are a weekend.
    days = trading_days(date(2026, 11, 16), date(2026, 11, 23))
    assert days == [date(2026, 11, d) for d in (16, 17, 18, 19, 20, 23)]
    assert trading_days(date(2026, 11, 21), date(2026, 11, 22)) == []
    assert trading_days(date(2026, 11, 20), date(2026, 11, 16)) == []


def test_daily_times_are_midnight_utc_of_each_trading_day() -> None:
    start, end = date(2024, 2, 26), date(2024, 3, 4)
    times = daily_times(start, end)
    assert times.dtype == np.int64
    expected = [epoch(d.year, d.month, d.day) for d in trading_days(start, end)]
    assert times.tolist() == expected


def test_intraday_window_is_sixty_calendar_days_ending_on_asof() -> None:
    asof = date(2026, 11, 20)
    days = intraday_days(asof)
    assert days[-1] == asof
    assert days[0] == date(2026, 9, 22)  # 2026-09-21 is exactly 60 days back: excluded
    assert len(days) == 44
    assert intraday_days(date(2026, 11, 22), 2) == []  # a weekend


def test_intraday_times_are_78_bars_from_1430_to_2055() -> None:
    times = intraday_times(date(2026, 11, 20), days=3)
    assert times.shape == (3 * BARS_PER_SESSION,)
    per_day = times.reshape(3, BARS_PER_SESSION)
    assert hours(per_day[:, 0]) == ["14:30"] * 3
    assert hours(per_day[:, -1]) == ["20:55"] * 3
    assert set(np.diff(per_day, axis=1).ravel().tolist()) == {300}
    assert int(times[0]) == epoch(2026, 11, 18, 14, 30)


# --- periods and intervals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [
        ("5m", 5, "m"),
        ("1h", 1, "h"),
        ("5d", 5, "d"),
        ("2wk", 2, "wk"),
        ("6mo", 6, "mo"),
        ("9999y", 9999, "y"),
        ("ytd", 0, "ytd"),
        ("max", 0, "max"),
    ],
)
def test_parse_period_accepts_counts_units_and_words(text: str, count: int, unit: str) -> None:
    assert parse_period(text) == Period(text=text, count=count, unit=unit)


@pytest.mark.parametrize("text", ["", "0d", "05d", "1D", "10000d", "1w", "d", "1.5d", "YTD", " 1d"])
def test_parse_period_refuses_with_the_field_value_and_what_is_accepted(text: str) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_period(text)
    assert caught.value.field == "period"
    assert repr(text) in str(caught.value)
    assert "ytd" in caught.value.accepted
    assert "mo" in caught.value.accepted


def test_check_interval_accepts_the_eight_and_names_them_when_refusing() -> None:
    for interval in INTERVALS:
        assert check_interval(interval) == interval
    with pytest.raises(CalendarError) as caught:
        check_interval("2h")
    assert caught.value.field == "interval"
    assert "'2h'" in str(caught.value)
    assert all(i in caught.value.accepted for i in INTERVALS)


def test_base_interval_and_lengths() -> None:
    assert [base_interval(i) for i in INTERVALS] == ["5m"] * 5 + ["1d"] * 3
    assert interval_seconds("4h") == 14_400
    assert interval_seconds("1mo") == 30 * 86_400
    assert nominal_seconds(parse_period("2wk")) == 14 * 86_400
    assert nominal_seconds(parse_period("1y")) == 365 * 86_400
    assert nominal_seconds(parse_period("ytd")) is None


@pytest.mark.parametrize(
    ("period", "interval"),
    [
        *[("60d", "5m"), ("1440h", "5m"), ("2mo", "1h"), ("max", "5m"), ("1h", "1h")],
        *[("4h", "4h"), ("1d", "1d"), ("ytd", "1d"), ("max", "1mo"), ("1wk", "1wk")],
        *[("1mo", "1mo"), ("5y", "1wk")],
    ],
)
def test_check_combination_allows_what_the_data_can_serve(period: str, interval: str) -> None:
    check_combination(parse_period(period), interval)


@pytest.mark.parametrize(
    ("period", "interval"),
    [
        *[("61d", "5m"), ("3mo", "1h"), ("1y", "4h"), ("9wk", "15m"), ("ytd", "30m")],
        *[("2m", "5m"), ("30m", "1h"), ("3h", "4h"), ("23h", "1d"), ("5d", "1wk"), ("4wk", "1mo")],
    ],
)
def test_check_combination_refuses_impossible_periods(period: str, interval: str) -> None:
    with pytest.raises(CalendarError) as caught:
        check_combination(parse_period(period), interval)
    assert caught.value.field == "period"
    assert f"'{period}'" in str(caught.value)
    assert interval in caught.value.accepted


def test_intraday_refusal_says_the_sixty_day_limit() -> None:
    with pytest.raises(CalendarError) as caught:
        check_combination(parse_period("6mo"), "1h")
    assert "60d" in caught.value.accepted
    assert "max" in caught.value.accepted


# --- aggregation -------------------------------------------------------------------------


def test_hourly_buckets_align_to_the_session_open_with_a_short_last_one() -> None:
    five = bars_at(intraday_times(date(2026, 11, 20), days=3))  # Wed, Thu, Fri
    hourly = aggregate(five, "1h")
    assert len(hourly) == 3 * 7
    assert hours(hourly.time[:7]) == ["14:30", "15:30", "16:30", "17:30", "18:30", "19:30", "20:30"]
    first = five.take(slice(0, 12))
    assert hourly.open[0] == first.open[0]
    assert hourly.close[0] == first.close[-1]
    assert hourly.high[0] == first.high.max()
    assert hourly.low[0] == first.low.min()
    assert hourly.volume[0] == first.volume.sum()
    last = five.take(slice(72, 78))  # 20:30-21:00: six bars only
    assert hourly.volume[6] == last.volume.sum()
    assert hourly.close[6] == last.close[-1]


def test_four_hour_buckets_start_at_1430_and_1830_and_never_cross_days() -> None:
    five = bars_at(intraday_times(date(2026, 11, 20), days=3))
    four = aggregate(five, "4h")
    assert hours(four.time) == ["14:30", "18:30"] * 3
    assert four.volume[:2].tolist() == [five.volume[:48].sum(), five.volume[48:78].sum()]


@pytest.mark.parametrize(("interval", "per_day"), [("15m", 26), ("30m", 13), ("1h", 7)])
def test_intraday_bucket_counts_per_session(interval: str, per_day: int) -> None:
    five = bars_at(intraday_times(date(2026, 11, 20), days=7))
    assert len(aggregate(five, interval)) == 5 * per_day


def test_buckets_are_defined_by_time_when_bars_are_missing() -> None:
    times = intraday_times(date(2026, 11, 20), days=1)
    kept = np.delete(times, [0, 1, 2, 20, 21])  # lose 14:30-14:40 and 16:10-16:15
    hourly = aggregate(bars_at(kept), "1h")
    assert hours(hourly.time) == ["14:45", "15:30", "16:30", "17:30", "18:30", "19:30", "20:30"]
    assert hourly.volume.sum() == bars_at(kept).volume.sum()


def test_base_interval_returns_the_input_unchanged() -> None:
    five = bars_at(intraday_times(date(2026, 11, 20), days=1))
    assert aggregate(five, "5m") is five
    assert len(aggregate(Bars.empty(), "1h")) == 0


def test_weekly_buckets_start_on_mondays_or_the_first_bar_of_the_week() -> None:
    times = daily_times(date(2026, 10, 1), date(2026, 11, 20))
    daily = bars_at(np.delete(times, np.flatnonzero(times == epoch(2026, 10, 12))))
    weekly = aggregate(daily, "1wk")
    starts = [datetime.fromtimestamp(int(t), tz=UTC).date() for t in weekly.time]
    assert starts[0] == date(2026, 10, 1)  # a Thursday: the data starts mid-week
    assert date(2026, 10, 13) in starts  # Monday the 12th is missing: the week starts Tuesday
    assert all(d.weekday() == 0 for d in starts[1:] if d != date(2026, 10, 13))
    assert len(weekly) == 8
    # Week of Monday 2026-11-16: five bars, the last of the data.
    assert weekly.volume[-1] == daily.volume[-5:].sum()
    assert weekly.close[-1] == daily.close[-1]
    assert weekly.open[-1] == daily.open[-5]


def test_monthly_buckets_start_at_the_first_trading_day_of_each_month() -> None:
    daily = bars_at(daily_times(date(2026, 1, 1), date(2026, 11, 20)))
    monthly = aggregate(daily, "1mo")
    starts = [datetime.fromtimestamp(int(t), tz=UTC).date() for t in monthly.time]
    expected = [trading_days(date(2026, m, 1), date(2026, m, 7))[0] for m in range(1, 12)]
    assert starts == expected
    assert starts[1] == date(2026, 2, 2)  # Feb 1st 2026 is a Sunday
    assert int(monthly.volume.sum()) == int(daily.volume.sum())


# --- windows -----------------------------------------------------------------------------


def test_one_hour_of_five_minute_bars_is_the_last_twelve() -> None:
    five = bars_at(intraday_times(date(2026, 11, 20), days=3))
    window = select(five, parse_period("1h"))
    assert len(window) == 12
    assert hours(window.time[[0, -1]]) == ["20:00", "20:55"]


def test_one_day_at_one_hour_is_the_seven_buckets_of_the_last_session() -> None:
    hourly = aggregate(bars_at(intraday_times(date(2026, 11, 20), days=3)), "1h")
    window = select(hourly, parse_period("1d"))
    assert len(window) == 7
    assert int(window.time[0]) == epoch(2026, 11, 20, 14, 30)
    assert int(window.volume[-1]) == sum(range(3 * 78 - 5, 3 * 78 + 1))  # the 30-minute bucket


def test_five_days_on_a_friday_asof_is_one_week_of_daily_bars() -> None:
    daily = bars_at(daily_times(date(2026, 10, 1), date(2026, 11, 20)))  # ends on a Friday
    window = select(daily, parse_period("5d"))
    assert len(window) == 5
    assert int(window.time[0]) == epoch(2026, 11, 16)


def test_one_week_on_a_tuesday_asof_covers_wednesday_to_tuesday() -> None:
    daily = bars_at(daily_times(date(2026, 10, 1), date(2026, 11, 17)))
    window = select(daily, parse_period("1wk"))
    assert int(window.time[0]) == epoch(2026, 11, 11)
    assert len(window) == 5


def test_months_and_years_are_calendar_months_with_the_day_clamped() -> None:
    assert window_start(epoch(2026, 3, 31), parse_period("1mo")) == epoch(2026, 2, 28)
    assert window_start(epoch(2024, 2, 29, 14, 30), parse_period("1y")) == epoch(
        2023, 2, 28, 14, 30
    )
    assert window_start(epoch(2026, 1, 15), parse_period("13mo")) == epoch(2024, 12, 15)
    daily = bars_at(daily_times(date(2026, 1, 1), date(2026, 3, 31)))
    window = select(daily, parse_period("1mo"))
    assert int(window.time[0]) == epoch(2026, 3, 2)  # after Sat 2026-02-28: Mon 2026-03-02


def test_ytd_starts_on_the_first_trading_day_of_the_latest_year() -> None:
    daily = bars_at(daily_times(date(2025, 11, 3), date(2026, 2, 6)))
    window = select(daily, parse_period("ytd"))
    assert int(window.time[0]) == epoch(2026, 1, 1)
    assert len(window) == len(trading_days(date(2026, 1, 1), date(2026, 2, 6)))


def test_max_keeps_everything_and_empty_stays_empty() -> None:
    daily = bars_at(daily_times(date(2025, 11, 3), date(2026, 2, 6)))
    assert len(select(daily, parse_period("max"))) == len(daily)
    assert window_start(epoch(2026, 2, 6), parse_period("max")) is None
    assert len(select(Bars.empty(), parse_period("5d"))) == 0
    assert len(select(daily, parse_period("9999y"))) == len(daily)


def test_periods_count_from_the_latest_bar_not_from_a_day_boundary() -> None:
    hourly = aggregate(bars_at(intraday_times(date(2026, 11, 20), days=3)), "1h")
    # 2d at 1h: after Wed 20:30, so Thursday's and Friday's sessions.
    assert len(select(hourly, parse_period("2d"))) == 14
    # 90m at 30m: after 20:30 - 90m = 19:00, so three buckets.
    thirty = aggregate(bars_at(intraday_times(date(2026, 11, 20), days=1)), "30m")
    assert hours(select(thirty, parse_period("90m")).time) == ["19:30", "20:00", "20:30"]
