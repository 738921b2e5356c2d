"""What the plan review puts on the calendar: each active plan's next review, by its review cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlmodel import Session, col, select

from engine.deadlines import next_due
from engine.processes import Due
from engine.settings import get_settings
from registry import ContinuityPlan
from registry.clock import as_utc, utcnow


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    """Plan reviews falling due before `horizon` (overdue ones too): the cadence's first occurrence after the last
    review, or, for a plan never reviewed, its next occurrence from now."""
    tz = get_settings().timezone
    now = utcnow()
    for plan in db.exec(select(ContinuityPlan).where(col(ContinuityPlan.active).is_(True))
                        .order_by(col(ContinuityPlan.code))):
        due = next_due(plan.review_cadence, plan.last_reviewed_at or now, tz)
        if due < as_utc(horizon):
            yield Due(kind="Plan review", what=f"{plan.code} {plan.name}", owner_id=plan.owner_id, due_at=due)
