from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event

from flows.finance.budget_variance.ledger import figures
from flows.finance.budget_variance.rules import EXPENSE, INCOME, LineFigures, material, variance
from registry import LineKind, RequestStatus, session
from registry.db import get_engine
from tests import factories as f

NOVEMBER = date(2026, 11, 1)


def _months(*numbers: int) -> list[date]:
    return [date(2026, n, 1) for n in numbers]


def _company() -> dict[str, int]:
    """Operations budgets 1,000 a month on 6000 (revised to 1,500 from July), 200 a month on 6100 (never booked);
    Sales has 5,000 a month of income on 4000 and spends on 6500 with no budget at all."""
    with session() as db:
        owner = f.person(db)
        ops = f.cost_centre(db, owner=owner, code="OPS")
        sales = f.cost_centre(db, owner=owner, code="SAL")
        supplier = f.vendor(db, owner=owner)
        for month in _months(*range(1, 13)):
            f.budget_line(db, ops, month, "1000.00")
            f.budget_line(db, ops, month, "200.00", account="6100")
            f.budget_line(db, sales, month, "5000.00", account="4000", kind=LineKind.income)
        for month in _months(*range(7, 13)):
            f.budget_line(db, ops, month, "1500.00", version=2)
        for month in _months(11, 12):  # and again for the last two months: the highest version counts
            f.budget_line(db, ops, month, "1800.00", version=3)
        f.budget_line(db, ops, date(2025, 11, 1), "99999.00")  # last year's
        f.budget_line(db, ops, date(2027, 1, 1), "99999.00")  # next year's
        for month in _months(*range(1, 11)):
            f.actual(db, ops, month.replace(day=15), "1100.00")
            f.actual(db, sales, month.replace(day=28), "5200.00", account="4000")
        f.actual(db, ops, date(2026, 11, 3), "1000.00")
        f.actual(db, ops, date(2026, 11, 30), "1250.50")
        f.actual(db, sales, date(2026, 11, 20), "300.00", account="6500")
        f.actual(db, ops, date(2026, 12, 1), "77777.00")  # after the month reported on
        f.actual(db, ops, date(2025, 12, 31), "77777.00")  # last year's
        # Sales has no income booked in November: a month with no actuals.
        f.purchase_request(db, supplier, "400.00", centre=ops, created_at=datetime(2026, 11, 12, tzinfo=UTC))
        f.purchase_request(db, supplier, "150.00", centre=ops, status=RequestStatus.ordered,
                           created_at=datetime(2026, 3, 2, tzinfo=UTC))
        invoiced = f.purchase_request(db, supplier, "800.00", centre=ops, created_at=datetime(2026, 11, 2, tzinfo=UTC))
        f.actual(db, ops, date(2026, 11, 25), "800.00", account="6000", reference=invoiced.key)
        f.purchase_request(db, supplier, "90.00", centre=ops, created_at=datetime(2026, 12, 1, tzinfo=UTC))
        f.purchase_request(db, supplier, "9000.00", centre=ops, status=RequestStatus.pending_approval,
                           created_at=datetime(2026, 11, 12, tzinfo=UTC))
        return {"ops": ops.id or 0, "sales": sales.id or 0}


def _line(centre: int, code: str, account: str, kind: str, *, budget: str = "0", actual: str = "0",
          committed: str = "0", budget_ytd: str = "0", actual_ytd: str = "0", committed_ytd: str = "0",
          budget_year: str = "0", budget_year_original: str = "0", budget_rest: str = "0") -> LineFigures:
    """A line of November; every amount not given is 0."""
    def money(value: str) -> Decimal:
        return Decimal(value).quantize(Decimal("0.01"))

    return LineFigures(
        cost_centre_id=centre, cost_centre=code, account=account, kind=kind, month=NOVEMBER, budget=money(budget),
        actual=money(actual), committed=money(committed), budget_ytd=money(budget_ytd),
        actual_ytd=money(actual_ytd), committed_ytd=money(committed_ytd), budget_year=money(budget_year),
        budget_year_original=money(budget_year_original), budget_rest=money(budget_rest))


@contextmanager
def _statements(url: str) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_figures_of_november_every_line_current_and_original_budget_actuals_and_commitments(any_db: str) -> None:
    ids = _company()
    with session() as db, _statements(any_db) as statements:
        found = figures(db, date(2026, 11, 17))  # any day of the month reports on the month
    assert len(statements) == 4, "four aggregate queries, whatever the number of lines"
    names = {line.cost_centre_id: line.cost_centre_name for line in found}
    assert [(line.cost_centre, line.account, line.kind) for line in found] == [
        ("OPS", "6000", EXPENSE), ("OPS", "6100", EXPENSE), ("SAL", "4000", INCOME), ("SAL", "6500", EXPENSE)]
    expected = [
        # 6000: Jan–Jun 1,000, Jul–Oct 1,500, Nov–Dec 1,800; booked 10 × 1,100 then 1,000 + 1,250.50 + 800 (invoice).
        _line(ids["ops"], "OPS", "6000", EXPENSE, budget="1800.00", actual="3050.50", committed="400.00",
              budget_ytd="13800.00", actual_ytd="14050.50", committed_ytd="550.00", budget_year="15600.00",
              budget_year_original="12000.00", budget_rest="1800.00"),
        _line(ids["ops"], "OPS", "6100", EXPENSE, budget="200.00", budget_ytd="2200.00", budget_year="2400.00",
              budget_year_original="2400.00", budget_rest="200.00"),
        _line(ids["sales"], "SAL", "4000", INCOME, budget="5000.00", budget_ytd="55000.00", actual_ytd="52000.00",
              budget_year="60000.00", budget_year_original="60000.00", budget_rest="5000.00"),
        _line(ids["sales"], "SAL", "6500", EXPENSE, actual="300.00", actual_ytd="300.00"),
    ]
    assert [replace(line, cost_centre_name="") for line in found] == expected
    assert set(names) == {ids["ops"], ids["sales"]} and all(names.values())

    verdicts = {(v.line.cost_centre, v.line.account): material(v, 10, 1000) for v in map(variance, found)}
    assert verdicts == {("OPS", "6000"): True, ("OPS", "6100"): False, ("SAL", "4000"): True,
                        ("SAL", "6500"): False}


def test_a_month_early_in_the_year_and_an_empty_year(any_db: str) -> None:
    _company()
    with session() as db:
        january = {(line.cost_centre, line.account): line for line in figures(db, date(2026, 1, 1))}
        empty = figures(db, date(2024, 6, 1))
    ops = january["OPS", "6000"]
    assert (ops.budget, ops.actual, ops.budget_ytd, ops.actual_ytd, ops.committed_ytd, ops.budget_rest) == (
        Decimal("1000.00"), Decimal("1100.00"), Decimal("1000.00"), Decimal("1100.00"), Decimal("0.00"),
        Decimal("14600.00"))
    assert ("SAL", "6500") not in january, "nothing booked on it yet in January"
    assert empty == []
