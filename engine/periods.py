"""Periods — a week, a month, a quarter, a range of days — and the organisation's "today", in one place.

A period is whole calendar days of the organisation's calendar, both ends included; `bounds(tz)` turns it into
the UTC moments a query compares timestamps with. Everything here is pure except `today()`, which reads the
clock and the organisation's time zone (engine.settings) when not given them.

    parse("last-month", today())      → Period("monthly", "2026-10", 2026-10-01, 2026-10-31)
    parse("2026-Q4", d).bounds(tz)     → (2026-10-01 00:00 local, 2027-01-01 00:00 local) in UTC
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from registry.clock import as_utc, utcnow

PeriodKind = Literal["weekly", "monthly", "quarterly", "custom"]
RELATIVE = ("last-week", "this-week", "last-month", "this-month", "last-quarter", "this-quarter")
FORMS = ("last-week, this-week, last-month, this-month, last-quarter, this-quarter, 2026-11, 2026-W47, 2026-Q4 "
         "or 2026-01-01..2026-03-31")
PATTERN = (r"^\s*((last|this)-(week|month|quarter)|\d{4}-\d{2}|\d{4}-[Ww]\d{2}|\d{4}-[Qq][1-4]"
           r"|\d{4}-\d{2}-\d{2}\s*\.\.\s*\d{4}-\d{2}-\d{2})\s*$")
"""What `parse` accepts once `normalize` tidied it: a parameter form's pattern, checked after the tidying."""
LONGEST_RANGE_DAYS = 3 * 366


@dataclass(frozen=True)
class Period:
    """Whole calendar days, both ends included, in the organisation's calendar."""

    kind: PeriodKind
    name: str
    start: date
    end: date

    @property
    def key(self) -> str:
        """Unique across kinds (a month and a range of the same days are different periods): monthly-2026-10."""
        return f"{self.kind}-{self.name}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        """The period's display name: November 2026, week 47 of 2026, Q4 2026, or its first and last day."""
        if self.kind == "monthly":
            return self.start.strftime("%B %Y")
        if self.kind == "weekly":
            year, week_number, _ = self.start.isocalendar()
            return f"Week {week_number} of {year}"
        if self.kind == "quarterly":
            return f"Q{_quarter_number(self.start)} {self.start.year}"
        return f"{self.start:%-d %b %Y} – {self.end:%-d %b %Y}"

    def previous(self) -> Period:
        """The period just before, of the same kind (a range: the same number of days)."""
        return self.shifted(-1)

    def shifted(self, steps: int) -> Period:
        """The period `steps` periods of the same kind later (earlier when negative)."""
        if self.kind == "custom":
            return days(self.start + timedelta(days=self.days * steps), self.end + timedelta(days=self.days * steps))
        if self.kind == "weekly":
            return week_of(self.start + timedelta(weeks=steps))
        months = self.start.year * 12 + self.start.month - 1 + steps * (3 if self.kind == "quarterly" else 1)
        first = date(months // 12, months % 12 + 1, 1)
        return quarter_of_day(first) if self.kind == "quarterly" else month(first.year, first.month)

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def bounds(self, tz: str = "UTC") -> tuple[datetime, datetime]:
        """The period's first moment and the first moment after its last day, local midnights in `tz`, in UTC."""
        return midnight(self.start, tz), midnight(self.end + timedelta(days=1), tz)


def midnight(day: date, tz: str = "UTC") -> datetime:
    """The start of `day` in time zone `tz`, in UTC."""
    return as_utc(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)))


def _quarter_number(day: date) -> int:
    return (day.month - 1) // 3 + 1


def week(year: int, number: int) -> Period:
    """ISO week `number` of `year` (Monday to Sunday); ValueError for a week the year does not have."""
    start = date.fromisocalendar(year, number, 1)
    return Period("weekly", f"{year}-W{number:02d}", start, start + timedelta(days=6))


def month(year: int, number: int) -> Period:
    start = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period("monthly", f"{year}-{number:02d}", start, following - timedelta(days=1))


def quarter(year: int, number: int) -> Period:
    if not 1 <= number <= 4:
        raise ValueError(f"there is no quarter {number}")
    return Period("quarterly", f"{year}-Q{number}", date(year, 3 * number - 2, 1), month(year, 3 * number).end)


def days(start: date, end: date) -> Period:
    """An explicit range of days, both ends included."""
    if end < start:
        raise ValueError(f"it ends ({end}) before it starts ({start})")
    return Period("custom", f"{start.isoformat()}..{end.isoformat()}", start, end)


def week_of(day: date) -> Period:
    return week(*day.isocalendar()[:2])


def month_of(day: date) -> Period:
    return month(day.year, day.month)


def quarter_of_day(day: date) -> Period:
    return quarter(day.year, _quarter_number(day))


def local_date(moment: datetime, tz: str = "UTC") -> date:
    """The calendar day `moment` falls on in time zone `tz`."""
    return as_utc(moment).astimezone(ZoneInfo(tz)).date()


def today(at: datetime | None = None, tz: str | None = None) -> date:
    """The organisation's today: the day it is (or was at `at`) in its time zone (engine.settings)."""
    if tz is None:
        from engine.settings import get_settings

        tz = get_settings().timezone
    return local_date(at or utcnow(), tz)


def normalize(text: str) -> str:
    """The period as typed, tidied: spaces dropped, keywords lower case, W and Q upper case."""
    tidy = re.sub(r"\s+", "", text or "")
    return tidy.lower() if tidy.lower() in RELATIVE else tidy.upper()


def parse(text: str, on: date) -> Period:
    """The period `text` names, relative ones counted from the day `on`; ValueError says what is accepted."""
    value = normalize(text)
    try:
        if value in RELATIVE:
            return _relative(value, on)
        if match := re.fullmatch(r"(\d{4})-(\d{2})", value):
            return month(int(match[1]), _in_range(int(match[2]), 1, 12, "month"))
        if match := re.fullmatch(r"(\d{4})-W(\d{2})", value):
            return week(int(match[1]), _in_range(int(match[2]), 1, 53, "week"))
        if match := re.fullmatch(r"(\d{4})-Q([1-4])", value):
            return quarter(int(match[1]), int(match[2]))
        if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", value):
            start, end = date.fromisoformat(match[1]), date.fromisoformat(match[2])
            if (end - start).days >= LONGEST_RANGE_DAYS:
                raise ValueError("a range may span at most three years")
            return days(start, end)
    except ValueError as error:
        raise ValueError(f"period {text!r} is not valid: {error}. Use {FORMS}.") from None
    raise ValueError(f"period {text!r} is not one of {FORMS}.")


def _in_range(number: int, low: int, high: int, what: str) -> int:
    if not low <= number <= high:
        raise ValueError(f"there is no {what} {number}")
    return number


def _relative(value: str, on: date) -> Period:
    which, _, kind = value.partition("-")
    current = {"week": week_of, "month": month_of, "quarter": quarter_of_day}[kind](on)
    return current.previous() if which == "last" else current


def quarter_of(moment: datetime, tz: str = "UTC") -> str:
    """The quarter `moment` falls in on the calendar of `tz`, named like 2026-Q4."""
    return quarter_of_day(local_date(moment, tz)).name


def quarter_bounds(name: str, tz: str = "UTC") -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of a quarter named like 2026-Q4."""
    match = re.fullmatch(r"(\d{4})-Q([1-4])", name.strip().upper())
    if match is None:
        raise ValueError(f"period {name!r} is not a quarter like 2026-Q4")
    return quarter(int(match[1]), int(match[2])).bounds(tz)
