"""What the audit puts on the calendar: each active control's next test, by its cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlmodel import Session, col, select

from engine.deadlines import next_due
from engine.processes import Due
from engine.settings import get_settings
from registry import Control
from registry.clock import as_utc, utcnow


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    """Control tests falling due before `horizon` (overdue ones too): the stored next due date, or, for a control
    never scheduled, the cadence's next occurrence after its last test (from now if never tested)."""
    tz = get_settings().timezone
    now = utcnow()
    for control in db.exec(select(Control).where(col(Control.active).is_(True)).order_by(col(Control.ref))):
        due = control.next_due_at or next_due(control.cadence, control.last_tested_at or now, tz)
        if as_utc(due) < as_utc(horizon):
            yield Due(kind="Control test", what=f"{control.ref} {control.title}", owner_id=control.owner_id,
                      due_at=as_utc(due))
