"""What the budget variance puts on the calendar: every justification still owed, by its owner and due date."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlmodel import Session, col, select

from engine.processes import Due
from registry import BudgetExplanation, CostCentre, HumanStep, StepStatus
from registry.clock import as_utc


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    """Justifications asked and not answered yet that fall due before `horizon` (overdue ones too)."""
    owed = db.exec(select(BudgetExplanation, CostCentre, HumanStep)
                   .join(CostCentre, col(CostCentre.id) == BudgetExplanation.cost_centre_id)
                   .join(HumanStep, col(HumanStep.id) == BudgetExplanation.step_id)
                   .where(col(HumanStep.status) == StepStatus.pending, col(HumanStep.due_at) < horizon)
                   .order_by(col(HumanStep.due_at)))
    for explanation, centre, step in owed:
        yield Due(kind="Budget justification",
                  what=f"{centre.code} {centre.name} · {explanation.account}, {explanation.month:%B %Y}",
                  owner_id=step.person_id, due_at=as_utc(step.due_at))
