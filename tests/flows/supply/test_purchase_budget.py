"""The budget reads of a purchase request on both databases: many cost centres' positions in one statement
(registry.budget.positions), the same figures as each one alone and as the variance ledger's expense lines add up
to; who answers for each budget (flows/supply/purchase_budget.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from flows.finance.budget_variance.ledger import figures
from flows.supply.purchase_budget import holders
from flows.supply.purchase_rules import BudgetHolder
from registry import LineKind, RequestStatus, session
from registry.budget import Position, position, positions
from tests import factories

YEAR = 2026


def test_positions_of_many_cost_centres_match_each_alone_and_the_ledger(any_db: str) -> None:
    with session() as db:
        owner = factories.person(db, "Olga Owner")
        vendor = factories.vendor(db, owner=owner)
        busy, income_too, empty = (factories.cost_centre(db, owner=owner) for _ in range(3))
        factories.budget_line(db, busy, date(YEAR, 1, 1), "1000.10")
        factories.budget_line(db, busy, date(YEAR, 1, 1), "1500.00", version=2)  # the revision counts, not both
        factories.budget_line(db, busy, date(YEAR, 6, 1), "2000.00", account="6200")
        factories.budget_line(db, busy, date(YEAR - 1, 12, 1), "99999.00")  # last year's
        factories.actual(db, busy, date(YEAR, 2, 3), "700.25")
        factories.actual(db, busy, date(YEAR, 3, 3), "50.00", account="6999")  # booked without budget: spending
        factories.actual(db, busy, date(YEAR - 1, 12, 31), "5000.00")
        for amount, status in (("300.00", RequestStatus.approved), ("200.00", RequestStatus.ordered),
                               ("111.00", RequestStatus.pending_approval), ("222.00", RequestStatus.rejected)):
            factories.purchase_request(db, vendor, amount, centre=busy, status=status)
        invoiced = factories.purchase_request(db, vendor, "400.00", centre=busy)
        factories.actual(db, busy, date(YEAR, 4, 1), "400.00", reference=invoiced.key)  # an actual now, not both
        factories.purchase_request(db, vendor, "800.00", centre=busy, created_at=datetime(YEAR - 1, 12, 31, tzinfo=UTC))
        factories.budget_line(db, income_too, date(YEAR, 1, 1), "5000.00", account="4000", kind=LineKind.income)
        factories.budget_line(db, income_too, date(YEAR, 1, 1), "300.00")
        factories.actual(db, income_too, date(YEAR, 1, 9), "6000.00", account="4000")  # income: not spending
        factories.actual(db, income_too, date(YEAR, 1, 9), "310.00")
        ids = [busy.id or 0, income_too.id or 0, empty.id or 0]

    with session() as db:
        together = positions(db, ids, YEAR)
        one_by_one = {i: position(db, i, YEAR) for i in ids}
        assert positions(db, [], YEAR) == {}
        lines = [line for line in figures(db, date(YEAR, 12, 1)) if line.kind == LineKind.expense]
    assert together == one_by_one
    # The variance pack reads the same rule line by line: its year-end expense sums are the positions.
    ledger = {i: (sum((x.budget_year for x in lines if x.cost_centre_id == i), Decimal(0)),
                  sum((x.actual_ytd for x in lines if x.cost_centre_id == i), Decimal(0)),
                  sum((x.committed_ytd for x in lines if x.cost_centre_id == i), Decimal(0))) for i in ids}
    assert ledger == {i: (p.budget_year, p.actual_ytd, p.committed) for i, p in together.items()}
    assert together[ids[0]] == Position(Decimal("3500.00"), Decimal("1150.25"), Decimal("500.00"),
                                        Decimal("1849.75"))
    assert together[ids[1]].remaining == Decimal("-10.00")
    assert together[ids[2]] == Position(Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))


def test_who_answers_for_each_budget(any_db: str) -> None:
    with session() as db:
        boss = factories.person(db, "Bea Boss")
        owner = factories.person(db, "Olga Owner", manager=boss)
        gone = factories.person(db, "Gus Gone", manager=boss, active=False)
        controller = factories.person(db, "Carl Controller")
        own_manager = factories.cost_centre(db, owner=owner, manager=controller)
        owners_manager = factories.cost_centre(db, owner=owner)
        inactive = factories.cost_centre(db, owner=gone)
        found = holders(db, [own_manager.id or 0, owners_manager.id or 0, inactive.id or 0])
        assert holders(db, []) == {}
    assert found == {
        own_manager.id: BudgetHolder(own_manager.code, owner.id, controller.id),  # its own manager stands in
        owners_manager.id: BudgetHolder(owners_manager.code, owner.id, boss.id),  # else the owner's manager
        inactive.id: BudgetHolder(inactive.code, None, boss.id),  # an inactive owner is no owner
    }
