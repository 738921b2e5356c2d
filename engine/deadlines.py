"""Due dates: cron cadences and working days. Quarters are periods (engine.periods), named here as before."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.periods import quarter_bounds, quarter_of
from engine.settings import get_settings
from registry.clock import as_utc, utcnow

__all__ = ["add_working_days", "answer_window", "due_within", "next_due", "quarter_bounds", "quarter_of",
           "working_days_from_now"]


def next_due(cadence: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first occurrence of `cadence` strictly after `after`, evaluated in time zone `tz`, in UTC."""
    return _next_due(cadence, as_utc(after), tz)


@lru_cache(maxsize=4096)
def _next_due(cadence: str, after: datetime, tz: str) -> datetime:
    # A calendar asks this for every control of a framework or every vendor, thousands sharing a handful of
    # cadences and dates; one cron evaluation costs ~0.3 ms, so each is computed once.
    return as_utc(croniter(cadence, after.astimezone(ZoneInfo(tz))).get_next(datetime))


def due_within(cadence: str, start: datetime, end: datetime, tz: str = "UTC") -> bool:
    """Whether `cadence` falls due at least once in [start, end)."""
    return next_due(cadence, as_utc(start) - timedelta(seconds=1), tz) < as_utc(end)


def add_working_days(start: datetime, days: int, tz: str = "UTC", holidays: Iterable[str | date] = ()) -> datetime:
    """`days` working days after `start` (weekends and `holidays` skipped), at end of that local business day."""
    skip = {h if isinstance(h, date) else date.fromisoformat(h) for h in holidays}
    zone = ZoneInfo(tz)
    day = as_utc(start).astimezone(zone).date()
    remaining = days
    while remaining > 0 or day.weekday() >= 5 or day in skip:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in skip:
            remaining -= 1
    return as_utc(datetime(day.year, day.month, day.day, 17, 0, tzinfo=zone))


def working_days_from_now(days: int, start: datetime | None = None) -> datetime:
    """`days` working days on the organisation's calendar (its time zone and holidays)."""
    settings = get_settings()
    return add_working_days(start or utcnow(), days, settings.timezone, settings.holidays)


def answer_window(days: int) -> tuple[datetime, datetime]:
    """A human step's due date in `days` working days, and its final deadline after the escalation grace."""
    due = working_days_from_now(days)
    return due, working_days_from_now(get_settings().escalation_grace_days, start=due)
