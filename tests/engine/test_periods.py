"""Periods and the organisation's today (engine.periods): pure functions, tested on fixed days."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from engine import periods
from engine.periods import Period, quarter_bounds, quarter_of
from engine.periods import parse as parse_period
from engine.settings import get_settings

TODAY = date(2026, 11, 25)  # a Wednesday in ISO week 48


@pytest.mark.parametrize(
    ("text", "kind", "key", "start", "end", "label"),
    [
        ("last-week", "weekly", "weekly-2026-W47", date(2026, 11, 16), date(2026, 11, 22), "Week 47 of 2026"),
        ("this-week", "weekly", "weekly-2026-W48", date(2026, 11, 23), date(2026, 11, 29), "Week 48 of 2026"),
        ("last-month", "monthly", "monthly-2026-10", date(2026, 10, 1), date(2026, 10, 31), "October 2026"),
        (" This-Month ", "monthly", "monthly-2026-11", date(2026, 11, 1), date(2026, 11, 30), "November 2026"),
        ("2026-02", "monthly", "monthly-2026-02", date(2026, 2, 1), date(2026, 2, 28), "February 2026"),
        ("2026-12", "monthly", "monthly-2026-12", date(2026, 12, 1), date(2026, 12, 31), "December 2026"),
        ("2026-w01", "weekly", "weekly-2026-W01", date(2025, 12, 29), date(2026, 1, 4), "Week 1 of 2026"),
        ("2026-W53", "weekly", "weekly-2026-W53", date(2026, 12, 28), date(2027, 1, 3), "Week 53 of 2026"),
        ("2026-q4", "quarterly", "quarterly-2026-Q4", date(2026, 10, 1), date(2026, 12, 31), "Q4 2026"),
        ("2026-01-01..2026-03-31", "custom", "custom-2026-01-01..2026-03-31", date(2026, 1, 1), date(2026, 3, 31),
         "1 Jan 2026 – 31 Mar 2026"),
        ("last-quarter", "quarterly", "quarterly-2026-Q3", date(2026, 7, 1), date(2026, 9, 30), "Q3 2026"),
        ("THIS-QUARTER", "quarterly", "quarterly-2026-Q4", date(2026, 10, 1), date(2026, 12, 31), "Q4 2026"),
    ],
)
def test_periods_resolve_to_whole_days(text: str, kind: str, key: str, start: date, end: date, label: str) -> None:
    period = parse_period(text, TODAY)
    assert (period.kind, period.key, period.start, period.end, period.label) == (kind, key, start, end, label)


def test_last_month_in_january_is_last_december() -> None:
    assert parse_period("last-month", date(2027, 1, 3)).key == "monthly-2026-12"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-13", "there is no month 13"),
        ("2025-W53", "2025-W53"),  # 2025 has 52 ISO weeks
        ("2026-W54", "there is no week 54"),
        ("2026-03-31..2026-01-01", "ends (2026-01-01) before it starts (2026-03-31)"),
        ("2026-02-30..2026-03-01", "2026-02-30"),
        ("2020-01-01..2026-01-01", "at most three years"),
        ("next-month", "is not one of"),
        ("November", "is not one of"),
        ("", "is not one of"),
    ],
)
def test_a_bad_period_says_what_is_wrong_and_what_is_accepted(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="period") as error:
        parse_period(text, TODAY)
    assert why in str(error.value)
    assert "2026-W47" in str(error.value), "the message lists the accepted forms"


@pytest.mark.parametrize(
    ("text", "previous"),
    [("2026-01", "monthly-2025-12"), ("2026-W01", "weekly-2025-W52"), ("2027-W01", "weekly-2026-W53"),
     ("2026-Q1", "quarterly-2025-Q4"), ("2026-03-01..2026-03-10", "custom-2026-02-19..2026-02-28")],
)
def test_the_previous_period_is_the_one_just_before(text: str, previous: str) -> None:
    assert parse_period(text, TODAY).previous().key == previous


def test_a_period_is_a_plain_value() -> None:
    assert parse_period("2026-11", TODAY) == Period("monthly", "2026-11", date(2026, 11, 1), date(2026, 11, 30))


def test_last_quarter_in_january_is_last_years_fourth() -> None:
    assert parse_period("last-quarter", date(2027, 1, 3)).key == "quarterly-2026-Q4"


@pytest.mark.parametrize(
    ("text", "steps", "expected"),
    [("2026-11", 2, "monthly-2027-01"), ("2026-11", -11, "monthly-2025-12"), ("2026-Q1", -1, "quarterly-2025-Q4"),
     ("2026-Q4", 1, "quarterly-2027-Q1"), ("2026-W52", 1, "weekly-2026-W53"), ("2026-W53", 1, "weekly-2027-W01"),
     ("2026-03-01..2026-03-10", 1, "custom-2026-03-11..2026-03-20")],
)
def test_a_period_shifts_by_whole_periods_of_its_kind(text: str, steps: int, expected: str) -> None:
    assert parse_period(text, TODAY).shifted(steps).key == expected


@pytest.mark.parametrize(
    ("text", "tz", "start", "end"),
    [("2026-10", "UTC", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
     # October starts in British Summer Time and ends in GMT: each end is the local midnight
     ("2026-10", "Europe/London", datetime(2026, 9, 30, 23, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
     ("2026-W48", "Asia/Tokyo", datetime(2026, 11, 22, 15, tzinfo=UTC), datetime(2026, 11, 29, 15, tzinfo=UTC))],
)
def test_bounds_are_the_local_midnights_around_the_period_in_utc(
        text: str, tz: str, start: datetime, end: datetime) -> None:
    assert parse_period(text, TODAY).bounds(tz) == (start, end)


def test_a_period_contains_its_first_and_last_day_only() -> None:
    november = periods.month(2026, 11)
    assert [november.contains(d) for d in (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 30),
                                           date(2026, 12, 1))] == [False, True, True, False]
    assert (november.days, periods.quarter(2028, 1).days, periods.week(2026, 1).days) == (30, 91, 7)


@pytest.mark.parametrize(
    ("moment", "tz", "day"),
    [(datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "Europe/London", date(2026, 7, 1)),
     (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "UTC", date(2026, 6, 30)),
     (datetime(2026, 1, 1, 3, tzinfo=UTC), "America/New_York", date(2025, 12, 31)),
     (datetime(2026, 1, 1, 3), "UTC", date(2026, 1, 1))],  # naive: the registry's UTC
)
def test_today_is_the_day_in_the_organisation_time_zone(moment: datetime, tz: str, day: date) -> None:
    assert periods.today(at=moment, tz=tz) == day


def test_today_reads_the_organisation_time_zone_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_TIMEZONE", "Pacific/Kiritimati")  # UTC+14: already tomorrow for most of the day
    get_settings.cache_clear()
    try:
        assert periods.today(at=datetime(2026, 11, 25, 12, tzinfo=UTC)) == date(2026, 11, 26)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("moment", "period"),
    [(datetime(2026, 1, 1, tzinfo=UTC), "2026-Q1"), (datetime(2026, 11, 25, tzinfo=UTC), "2026-Q4"),
     (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "2026-Q3")],  # already 1 July in London
)
def test_quarter_of_and_its_bounds_round_trip(moment: datetime, period: str) -> None:
    assert quarter_of(moment, "Europe/London") == period
    start, end = quarter_bounds(period, "Europe/London")
    assert start <= moment < end


@pytest.mark.parametrize("bad", ["2026-Q5", "Q4-2026", "2026", "2026-Q0", "2026-11"])
def test_quarter_bounds_refuses_what_is_not_a_quarter(bad: str) -> None:
    with pytest.raises(ValueError, match=f"period '{bad}' is not a quarter like 2026-Q4"):
        quarter_bounds(bad)


def test_the_deadlines_module_still_names_the_quarter_helpers() -> None:
    from engine import deadlines

    assert (deadlines.quarter_of, deadlines.quarter_bounds) == (quarter_of, quarter_bounds)


@pytest.mark.parametrize(
    "text", ["last-week", " This-Month ", "last-quarter", "2026-11", "2026-w47", "2026-q4", "2026-01-01 .. 2026-03-31"])
def test_the_form_pattern_lets_through_every_form_parse_accepts(text: str) -> None:
    assert re.match(periods.PATTERN, periods.normalize(text))
    parse_period(text, TODAY)


@pytest.mark.parametrize("text", ["next-month", "2026", "Q4", "2026-11-01"])
def test_the_form_pattern_refuses_what_parse_refuses(text: str) -> None:
    assert not re.match(periods.PATTERN, periods.normalize(text))
    with pytest.raises(ValueError):
        parse_period(text, TODAY)
