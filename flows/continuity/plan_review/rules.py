"""The continuity plan review's rules: when a plan is due, which occasion a review request is keyed by, what a
revision changes.

Plain functions over plain values: no Prefect, no database. Moments are aware datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Request:
    """A review request asked before: when, for which occasion, and how it stands."""

    step_id: int
    asked_at: datetime
    occasion: date
    pending: bool = False
    answered: bool = False
    missed_at: datetime | None = None
    """When its lapse was recorded (the owner's manager told); None while it is not."""


@dataclass(frozen=True)
class Review:
    """A plan to review now: the occasion its request is keyed by, and the request still open, if any."""

    occasion: date
    review_due: datetime
    asked_before: bool
    open_request: Request | None


def review_now(cadence: str, last_reviewed_at: datetime | None, requests: Sequence[Request], *, now: datetime,
               lead: timedelta, tz: str) -> Review | None:
    """Whether the plan is to be reviewed now, given the requests asked before (oldest first).

    A request asked after the last review and not settled is open: still unanswered, answered but not yet
    applied (an applied answer would have moved the last review past it), or lapsed without the lapse recorded.
    The plan keeps that request's occasion; otherwise review_occasion decides, after the latest recorded lapse.
    """
    since = last_reviewed_at
    unsettled = [r for r in requests if (since is None or r.asked_at > since)
                 and (r.pending or r.answered or r.missed_at is None)]
    missed = [r.missed_at for r in requests if r.missed_at is not None and (since is None or r.missed_at > since)]
    open_request = unsettled[-1] if unsettled else None
    due = review_due_at(cadence, last_reviewed_at, now, lead, tz)
    occasion = review_occasion(due, today=now.astimezone(ZoneInfo(tz)).date(), tz=tz,
                               open_on=open_request.occasion if open_request else None,
                               missed_on=max(missed).astimezone(ZoneInfo(tz)).date() if missed else None)
    if occasion is None:
        return None
    return Review(occasion=occasion, review_due=due or now.astimezone(UTC), asked_before=bool(missed),
                  open_request=open_request)


@dataclass(frozen=True)
class Targets:
    """What a review can change on a plan."""

    rto_minutes: int
    rpo_minutes: int
    summary: str
    version: int


def revised(current: Targets, *, rto_minutes: int | None, rpo_minutes: int | None, summary: str) -> Targets:
    """The plan after a revision: what the owner left empty stays as it was; the version goes up by one."""
    return Targets(rto_minutes=current.rto_minutes if rto_minutes is None else rto_minutes,
                   rpo_minutes=current.rpo_minutes if rpo_minutes is None else rpo_minutes,
                   summary=summary.strip() or current.summary, version=current.version + 1)


def lapse_code(last_reviewed_at: datetime | None, tz: str) -> str:
    """Which finding a lapsed review request raises: one per review outstanding since the plan's last review,
    however many of its requests lapse (each lapse is asked again, and the owner's manager told each time)."""
    if last_reviewed_at is None:
        return "review-lapsed-never-reviewed"
    return f"review-lapsed-since-{last_reviewed_at.astimezone(ZoneInfo(tz)).date().isoformat()}"
