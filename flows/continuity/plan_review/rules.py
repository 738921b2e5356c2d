"""The continuity plan review's rules: when a plan is due, and which occasion a review request is keyed by.

Plain functions over plain values: no Prefect, no database. Moments are aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.deadlines import next_due


def review_due_at(cadence: str, last_reviewed_at: datetime | None, now: datetime, lead: timedelta,
                  tz: str) -> datetime | None:
    """When the plan's review is due, if that falls before `now + lead`; None while it is not due yet.

    A plan never reviewed is due now. Otherwise the due date is the first occurrence of the cadence after the last
    review, with one refinement: a review given within `lead` before an occurrence counts for that occurrence.
    Reviews are asked for exactly then (lead days ahead), and without it a review answered on 20 May for a 1 June
    occurrence would leave 1 June as "the next occurrence after the last review" for ever, so the plan would stay
    due and never be asked about the following year's occurrence.
    """
    moment = now.astimezone(UTC)
    if last_reviewed_at is None:
        return moment
    due = next_due(cadence, last_reviewed_at + lead, tz)
    return due if due < moment + lead else None


def review_occasion(due_at: datetime | None, *, today: date, tz: str, open_on: date | None = None,
                    missed_on: date | None = None) -> date | None:
    """The day a review request is keyed by (one request per plan and occasion), or None when none is wanted today.

    - A request still open (waiting, answered but not applied, expired but not yet recorded as missed) keeps its
      own occasion, so re-runs and resumed runs settle that request instead of asking again.
    - A plan not due wants none.
    - After a missed review the plan stays due and is asked again from the day after the miss, keyed by that day:
      the request that was missed keeps its key, a re-run the same day asks nobody, the next daily run asks anew.
    - Otherwise the occasion is the day the review is due, in the organisation's time zone (today for a plan
      never reviewed: it is due now).
    """
    if open_on is not None:
        return open_on
    if due_at is None:
        return None
    if missed_on is not None:
        again = missed_on + timedelta(days=1)
        return again if today >= again else None
    return due_at.astimezone(ZoneInfo(tz)).date()
