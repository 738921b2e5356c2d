"""The budget section of the operations report and the justifications on the calendar, on both databases."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from engine import periods
from engine.human_steps import ask, record_answer
from engine.occasions import open_occasion
from engine.processes import process
from engine.templates import render_page
from flows.finance.budget_variance.calendar import obligations
from flows.finance.budget_variance.section import build
from registry import BudgetExplanation, LineKind, OccasionStatus, session
from registry.clock import utcnow
from tests import factories

NOV = date(2026, 11, 1)


def _books() -> dict[str, int]:
    """Operations 1,200 over on 6100 in November (one justification asked, one answered with a forecast), IT under
    budget, Sales' income 2,000 short."""
    with session() as db:
        owner, other = factories.person(db, "Olive Owner"), factories.person(db, "Ivan Owner")
        ops = factories.cost_centre(db, owner=owner, code="OPS")
        it = factories.cost_centre(db, owner=other, code="IT")
        sales = factories.cost_centre(db, owner=other, code="SAL")
        for month in (date(2026, 10, 1), NOV, date(2026, 12, 1)):
            factories.budget_line(db, ops, month, "1000.00", account="6100")
            factories.budget_line(db, it, month, "3000.00", account="6300")
        factories.budget_line(db, sales, NOV, "10000.00", account="4000", kind=LineKind.income)
        factories.actual(db, ops, date(2026, 10, 9), "1000.00", account="6100")
        factories.actual(db, ops, date(2026, 11, 9), "2200.00", account="6100")
        factories.actual(db, it, date(2026, 11, 9), "2500.00", account="6300")
        factories.actual(db, sales, date(2026, 11, 9), "8000.00", account="4000")
        occasion, _ = open_occasion(db, process="budget-variance", key="2026-11", title="Budget variance",
                                    period_start=None, period_end=None, status=OccasionStatus.collecting,
                                    phase="collecting")
        steps = []
        for centre, account, amount in ((ops, "6100", "1200.00"), (sales, "4000", "-2000.00")):
            row = BudgetExplanation(occasion_id=occasion.id or 0, month=NOV, cost_centre_id=centre.id or 0,
                                    account=account, variance=Decimal(amount), variance_pct=None)
            db.add(row)
            db.flush()
            step = ask(db, key=f"test-justify-{account}", person_id=centre.owner_id, form="budget_justification",
                       title=f"Justify {account}", subject_type="budget_explanation", subject_id=row.id or 0,
                       due_at=utcnow() + timedelta(days=2))
            row.step_id = step.id
            db.add(row)
            steps.append(step)
        record_answer(db, step=steps[0], person=owner, answer={
            "explanation": "Visits", "nature": "one-off", "revised_forecast": "4500.00"})
        db.commit()
        return {"owner": owner.id or 0, "other": other.id or 0}


def test_the_section_shows_the_month_the_year_and_the_justifications(any_db: str) -> None:
    _books()
    with session() as db:
        shown = build(db, periods.month(2026, 11))
    assert shown is not None
    total = shown["total"]
    assert (total.expense.budget, total.expense.actual, total.expense.variance) == \
        (Decimal("4000.00"), Decimal("4700.00"), Decimal("700.00"))
    assert (total.expense.budget_ytd, total.expense.actual_ytd) == (Decimal("8000.00"), Decimal("5700.00"))
    assert total.income.variance == Decimal("-2000.00")
    assert [r.cost_centre for r in shown["over"]] == ["OPS"], "only a cost centre over its expense budget"
    assert shown["over"][0].expense.forecast == Decimal("4500.00"), "the owner's revised forecast counts"
    assert (shown["material"], shown["received"], shown["missing"]) == (2, 1, 1)
    assert shown["pack"] == {"status": "collecting", "phase": "collecting"}
    figures = dict((name, value) for name, value, _ in shown["figures"])
    assert figures["Expenses actual 2026-11"] == Decimal("4700.00") and figures["Justifications missing"] == 1

    html = render_page(process("budget-variance").sections[0].template,
                       {"section": shown, "period": periods.month(2026, 11)})
    assert "Cost centres over their expense budget" in html and "OPS" in html and "1 missing" in html
    assert "collecting justifications" in html


def test_a_quarter_reports_its_last_month_and_a_year_without_books_has_no_section(any_db: str) -> None:
    _books()
    with session() as db:
        quarter = build(db, periods.quarter(2026, 4))
        empty = build(db, periods.month(2025, 11))
    assert quarter is not None and quarter["month"]["key"] == "2026-12"
    assert empty is None


def test_the_justifications_still_owed_are_on_the_calendar(any_db: str) -> None:
    ids = _books()
    with session() as db:
        owed = list(obligations(db, utcnow() + timedelta(days=30)))
        none_yet = list(obligations(db, utcnow()))
    assert [(d.kind, d.owner_id) for d in owed] == [("Budget justification", ids["other"])]
    assert "SAL" in owed[0].what and "4000" in owed[0].what and "November 2026" in owed[0].what
    assert none_yet == []
