"""What the risk review puts on the calendar: each active risk's next review, by its level's cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlmodel import Session

from engine.deadlines import next_due
from engine.processes import Due
from engine.settings import get_settings
from flows.risk.risk_review import register
from registry.clock import as_utc, utcnow


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    """Risk reviews falling due before `horizon` (overdue ones too): the stored next review, or, for a risk never
    scheduled, its residual level's cadence from now."""
    tz, now = get_settings().timezone, utcnow()
    for row in sorted(register.register(db), key=lambda r: r.code):
        due = as_utc(row.next_review_at) if row.next_review_at else next_due(row.residual.review_cadence, now, tz)
        if due < as_utc(horizon):
            yield Due(kind="Risk review", what=f"{row.code} {row.title} ({row.residual.name})", owner_id=row.owner_id,
                      due_at=due)
