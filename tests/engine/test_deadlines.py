from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.deadlines import add_working_days, due_within, next_due, quarter_bounds, quarter_of


@pytest.mark.parametrize(
    ("start", "days", "holidays", "expected"),
    [
        (datetime(2026, 11, 25, 9, tzinfo=UTC), 5, [], datetime(2026, 12, 2, 17, tzinfo=UTC)),  # Wed -> Wed
        (datetime(2026, 11, 27, 9, tzinfo=UTC), 1, [], datetime(2026, 11, 30, 17, tzinfo=UTC)),  # Fri -> Mon
        (datetime(2026, 11, 28, 9, tzinfo=UTC), 0, [], datetime(2026, 11, 30, 17, tzinfo=UTC)),  # Sat -> Mon
        (datetime(2026, 12, 24, 9, tzinfo=UTC), 1, ["2026-12-25"], datetime(2026, 12, 28, 17, tzinfo=UTC)),
    ],
)
def test_working_days_skip_weekends_and_holidays(start: datetime, days: int, holidays: list[str],
                                                 expected: datetime) -> None:
    assert add_working_days(start, days, "UTC", holidays) == expected


def test_working_days_end_at_local_close_of_business() -> None:
    due = add_working_days(datetime(2026, 7, 1, 9, tzinfo=UTC), 1, "Europe/London")
    assert due == datetime(2026, 7, 2, 16, tzinfo=UTC)  # 17:00 BST


@pytest.mark.parametrize(
    ("moment", "period"),
    [(datetime(2026, 1, 1, tzinfo=UTC), "2026-Q1"), (datetime(2026, 11, 25, tzinfo=UTC), "2026-Q4"),
     (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "2026-Q3")],  # already 1 July in London
)
def test_quarter_of_counts_in_the_organisation_time_zone(moment: datetime, period: str) -> None:
    assert quarter_of(moment, "Europe/London") == period


def test_quarter_bounds() -> None:
    start, end = quarter_bounds("2026-Q4", "UTC")
    assert (start, end) == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("bad", ["2026-Q5", "Q4-2026", "2026", "2026-Q0"])
def test_bad_period_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        quarter_bounds(bad)


@pytest.mark.parametrize(
    ("cadence", "due_in_q4"),
    [("0 9 1 1,4,7,10 *", True), ("0 9 1 * *", True), ("0 9 15 11 *", True), ("0 9 1 3 *", False),
     ("0 9 1 1 *", False)],
)
def test_due_within_a_quarter(cadence: str, due_in_q4: bool) -> None:
    start, end = quarter_bounds("2026-Q4", "UTC")
    assert due_within(cadence, start, end, "UTC") is due_in_q4


def test_next_due_honours_time_zone() -> None:
    after = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert next_due("0 7 1 1,4,7,10 *", after, "Europe/London") == datetime(2027, 1, 1, 7, tzinfo=UTC)
    assert next_due("0 7 1 1,4,7,10 *", datetime(2027, 2, 1, tzinfo=UTC), "Europe/London") == datetime(
        2027, 4, 1, 6, tzinfo=UTC)


def test_answer_window_follows_the_organisation_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.deadlines import answer_window
    from engine.settings import get_settings

    monkeypatch.setenv("OPS_TIMEZONE", "UTC")
    monkeypatch.setenv("OPS_HOLIDAYS", '["2026-12-25"]')
    monkeypatch.setenv("OPS_ESCALATION_GRACE_DAYS", "2")
    get_settings.cache_clear()
    try:
        due, final = answer_window(1)
        assert due.hour == 17 and final > due
        assert (final.date() - due.date()).days >= 2
        assert final.weekday() < 5 and due.weekday() < 5
    finally:
        get_settings.cache_clear()
