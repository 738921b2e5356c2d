"""The plan review's rules over plain values: which plan is reviewed now, keyed how, and what a revision changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from flows.continuity.plan_review.rules import Request, Targets, review_now, revised

LONDON = "Europe/London"
NOW = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
LEAD = timedelta(days=14)
JUNE_1 = "0 9 1 6 *"
LAST_YEAR = datetime(2025, 7, 1, tzinfo=UTC)
ASKED = datetime(2026, 5, 18, 9, tzinfo=UTC)
MAY_18 = date(2026, 5, 18)


def _asked(**state: object) -> Request:
    return Request(step_id=7, asked_at=ASKED, occasion=MAY_18, **state)  # type: ignore[arg-type]


@pytest.mark.parametrize(("last_reviewed", "requests", "expected"), [
    pytest.param(LAST_YEAR, [], (date(2026, 6, 1), False, None), id="due: keyed by the day it is due"),
    pytest.param(datetime(2026, 5, 19, tzinfo=UTC), [], None, id="reviewed for this occurrence: nothing"),
    pytest.param(LAST_YEAR, [_asked(pending=True)], (MAY_18, False, 7), id="a pending request keeps its occasion"),
    pytest.param(LAST_YEAR, [_asked(answered=True)], (MAY_18, False, 7), id="answered, not yet applied: open"),
    pytest.param(LAST_YEAR, [_asked()], (MAY_18, False, 7), id="lapsed, the lapse not recorded: still open"),
    pytest.param(LAST_YEAR, [_asked(missed_at=datetime(2026, 5, 19, 12, tzinfo=UTC))],
                 (date(2026, 5, 20), True, None), id="lapse recorded yesterday: asked again today"),
    pytest.param(LAST_YEAR, [_asked(missed_at=datetime(2026, 5, 20, 8, tzinfo=UTC))], None,
                 id="lapse recorded today: not again today"),
    pytest.param(datetime(2026, 5, 19, tzinfo=UTC), [_asked(pending=True)], None,
                 id="a request from before the last review is history"),
])
def test_which_plan_is_reviewed_now(last_reviewed: datetime, requests: list[Request],
                                    expected: tuple[date, bool, int | None] | None) -> None:
    review = review_now(JUNE_1, last_reviewed, requests, now=NOW, lead=LEAD, tz=LONDON)
    found = None if review is None else (
        review.occasion, review.asked_before, review.open_request.step_id if review.open_request else None)
    assert found == expected


CURRENT = Targets(rto_minutes=240, rpo_minutes=60, summary="Fail over to Leeds.", version=3)


@pytest.mark.parametrize(("rto", "rpo", "summary", "expected"), [
    pytest.param(90, None, "", Targets(90, 60, "Fail over to Leeds.", 4), id="what is left empty stays"),
    pytest.param(None, 15, "  Leeds and Bristol. ", Targets(240, 15, "Leeds and Bristol.", 4), id="trimmed summary"),
    pytest.param(None, None, "   ", Targets(240, 60, "Fail over to Leeds.", 4), id="a blank summary keeps the old"),
])
def test_what_a_revision_changes(rto: int | None, rpo: int | None, summary: str, expected: Targets) -> None:
    assert revised(CURRENT, rto_minutes=rto, rpo_minutes=rpo, summary=summary) == expected
