"""Where a purchase request is charged and how its cost centre's budget stands, read for the processes that handle
one: the reorder checks every request it raises against its cost centre's remaining budget, the approval names
the cost centre and who answers for it. Set-based: one query per question for all of a run's cost centres."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from flows.supply.purchase_rules import Budget, BudgetHolder
from registry import CostCentre, Person
from registry.budget import positions


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
