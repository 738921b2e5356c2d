"""Where a purchase request is charged and how its cost centre's budget stands, read for the processes that handle
one: the reorder checks every request it raises against its cost centre's remaining budget, the approval names
the cost centre and who answers for it. Set-based: one query per question for all of a run's cost centres."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from flows.supply.purchase_rules import Budget, BudgetHolder
from registry import Actual, BudgetLine, CostCentre, LineKind, Person, PurchaseRequest
from registry.budget import COMMITTED_STATUSES, Position, cents, current_lines, year_bounds


def positions(db: Session, cost_centre_ids: Iterable[int], year: int) -> dict[int, Position]:
    """registry.budget.position for many cost centres in ONE statement (a reorder run checks all of its cost
    centres at once): the same figures by definition — current expense lines of the year, actuals except on
    income accounts, approved or ordered requests created in the year with no actual invoicing them — grouped
    by cost centre. Every cost centre asked for is in the result, zeros where it has nothing."""
    wanted = set(cost_centre_ids)
    if not wanted:
        return {}
    start, end = year_bounds(year)
    lines = current_lines(start, end).where(col(BudgetLine.cost_centre_id).in_(wanted),
                                            col(BudgetLine.kind) == LineKind.expense).subquery()
    budget = (sa.select(lines.c.cost_centre_id.label("centre"), sa.func.sum(lines.c.amount).label("amount"))
              .group_by(lines.c.cost_centre_id).subquery())
    income = aliased(BudgetLine)
    is_income = (select(income.id).where(income.cost_centre_id == Actual.cost_centre_id,
                                         income.account == Actual.account, income.kind == LineKind.income,
                                         col(income.month) >= start, col(income.month) < end).exists())
    actual = (sa.select(col(Actual.cost_centre_id).label("centre"), sa.func.sum(Actual.amount).label("amount"))
              .where(col(Actual.cost_centre_id).in_(wanted), col(Actual.booked_on) >= start,
                     col(Actual.booked_on) < end, ~is_income)
              .group_by(col(Actual.cost_centre_id)).subquery())
    invoiced = select(Actual.id).where(Actual.reference == PurchaseRequest.key).exists()
    first, after = datetime(start.year, 1, 1, tzinfo=UTC), datetime(end.year, 1, 1, tzinfo=UTC)
    committed = (sa.select(col(PurchaseRequest.cost_centre_id).label("centre"),
                           sa.func.sum(PurchaseRequest.amount).label("amount"))
                 .where(col(PurchaseRequest.cost_centre_id).in_(wanted),
                        col(PurchaseRequest.status).in_(COMMITTED_STATUSES),
                        col(PurchaseRequest.created_at) >= first, col(PurchaseRequest.created_at) < after, ~invoiced)
                 .group_by(col(PurchaseRequest.cost_centre_id)).subquery())
    rows = db.execute(
        sa.select(col(CostCentre.id), budget.c.amount, actual.c.amount, committed.c.amount)
        .outerjoin(budget, budget.c.centre == CostCentre.id).outerjoin(actual, actual.c.centre == CostCentre.id)
        .outerjoin(committed, committed.c.centre == CostCentre.id).where(col(CostCentre.id).in_(wanted)))
    found: dict[int, Position] = {}
    for centre, budget_year, actual_ytd, committed_now in rows:
        b, a, c = cents(budget_year), cents(actual_ytd), cents(committed_now)
        found[centre] = Position(b, a, c, b - a - c)
    return found


def budgets(db: Session, cost_centre_ids: Iterable[int], year: int) -> dict[int, Budget]:
    """Each cost centre's expense budget for `year` and what remains of it (budget − actuals − committed)."""
    return {cc: Budget(budget=p.budget_year, remaining=p.remaining)
            for cc, p in positions(db, set(cost_centre_ids), year).items()}


def holders(db: Session, cost_centre_ids: Iterable[int]) -> dict[int, BudgetHolder]:
    """Who answers for each cost centre's budget: its owner while active, and who stands in (the cost centre's
    manager, else the owner's manager)."""
    wanted = set(cost_centre_ids)
    if not wanted:
        return {}
    owner = aliased(Person)
    rows = db.exec(select(CostCentre, owner.active, owner.manager_id)  # type: ignore[call-overload]
                   .join(owner, col(owner.id) == CostCentre.owner_id).where(col(CostCentre.id).in_(wanted)))
    return {cc.id or 0: BudgetHolder(cost_centre=cc.code, owner_id=cc.owner_id if active else None,
                                stand_in_id=cc.manager_id if cc.manager_id is not None else owners_manager)
            for cc, active, owners_manager in rows}
