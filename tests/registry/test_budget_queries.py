from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from registry import LineKind, RequestStatus, session
from registry.budget import Position, commitments, position
from tests import factories as f


def _at(month: int, day: int = 10) -> datetime:
    return datetime(2026, month, day, 9, tzinfo=UTC)


def test_position_counts_the_current_expense_budget_what_is_booked_and_what_is_committed(any_db: str) -> None:
    with session() as db:
        owner = f.person(db)
        ops, other = f.cost_centre(db, owner=owner), f.cost_centre(db, owner=owner)
        supplier = f.vendor(db, owner=owner)
        for month in range(1, 13):
            f.budget_line(db, ops, date(2026, month, 1), "1000.00")
            f.budget_line(db, ops, date(2026, month, 1), "5000.00", account="4000", kind=LineKind.income)
        for month in (7, 8):  # revised up mid-year: the current budget is the revision, not both
            f.budget_line(db, ops, date(2026, month, 1), "1500.00", version=2)
        f.budget_line(db, ops, date(2025, 12, 1), "9999.00")  # last year's
        f.budget_line(db, other, date(2026, 1, 1), "7777.00")  # another cost centre's
        f.actual(db, ops, date(2026, 1, 31), "900.10")
        f.actual(db, ops, date(2026, 11, 30), "1200.45", account="6200")  # booked with no budget: spending
        f.actual(db, ops, date(2026, 11, 30), "4800.00", account="4000")  # income: not against the budget
        f.actual(db, ops, date(2025, 12, 31), "300.00")  # last year's
        invoiced = f.purchase_request(db, supplier, "250.00", centre=ops, created_at=_at(11))
        f.actual(db, ops, date(2026, 11, 20), "250.00", reference=invoiced.key)  # now booked, no longer committed
        f.purchase_request(db, supplier, "400.00", centre=ops, created_at=_at(11))
        f.purchase_request(db, supplier, "600.00", centre=ops, status=RequestStatus.ordered, created_at=_at(10))
        for status in (RequestStatus.pending_approval, RequestStatus.rejected, RequestStatus.received):
            f.purchase_request(db, supplier, "10000.00", centre=ops, status=status, created_at=_at(11))
        f.purchase_request(db, supplier, "10000.00", centre=ops, created_at=datetime(2025, 12, 31, 23, tzinfo=UTC))
        f.purchase_request(db, supplier, "10000.00", centre=other, created_at=_at(11))
        centre = ops.id or 0

    with session() as db:
        found = position(db, centre, 2026)
        nothing = position(db, centre, 2024)
    assert found == Position(budget_year=Decimal("13000.00"), actual_ytd=Decimal("2350.55"),
                             committed=Decimal("1000.00"), remaining=Decimal("9649.45"))
    assert found.spent_or_committed == Decimal("3350.55")
    assert nothing == Position(Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))


def test_an_overspent_cost_centre_has_a_negative_remainder(any_db: str) -> None:
    with session() as db:
        owner = f.person(db)
        centre = f.cost_centre(db, owner=owner)
        f.budget_line(db, centre, date(2026, 3, 1), "100.00")
        f.actual(db, centre, date(2026, 3, 3), "80.00")
        f.purchase_request(db, f.vendor(db, owner=owner), "45.50", centre=centre, created_at=_at(3))
        found = position(db, centre.id or 0, 2026)
    assert found.remaining == Decimal("-25.50")


def test_commitments_by_cost_centre_account_and_month_of_the_request(any_db: str) -> None:
    with session() as db:
        owner = f.person(db)
        ops, it = f.cost_centre(db, owner=owner), f.cost_centre(db, owner=owner)
        supplier = f.vendor(db, owner=owner)
        f.purchase_request(db, supplier, "100.00", centre=ops, created_at=_at(11, 2))
        f.purchase_request(db, supplier, "50.25", centre=ops, status=RequestStatus.ordered, created_at=_at(11, 28))
        f.purchase_request(db, supplier, "70.00", centre=ops, account="6300", created_at=_at(11))
        f.purchase_request(db, supplier, "30.00", centre=it, created_at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
        f.purchase_request(db, supplier, "999.00", created_at=_at(11))  # charged to no cost centre
        invoiced = f.purchase_request(db, supplier, "999.00", centre=it, created_at=_at(11))
        f.actual(db, it, date(2026, 11, 30), "999.00", reference=invoiced.key)
        f.purchase_request(db, supplier, "999.00", centre=it, status=RequestStatus.pending_approval,
                           created_at=_at(11))
        f.purchase_request(db, supplier, "999.00", centre=it, created_at=datetime(2027, 1, 1, tzinfo=UTC))
        ids = ops.id or 0, it.id or 0
        found = commitments(db, 2026)
    assert found == {(ids[0], "6000", date(2026, 11, 1)): Decimal("150.25"),
                     (ids[0], "6300", date(2026, 11, 1)): Decimal("70.00"),
                     (ids[1], "6000", date(2026, 1, 1)): Decimal("30.00")}
