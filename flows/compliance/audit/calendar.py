"""What the audit puts on the calendar: each active control's next test, by its cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

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
    control = Control.__table__  # type: ignore[attr-defined]
    unscheduled = sa.and_(control.c.active.is_(True), control.c.next_due_at.is_(None))
    # A framework holds thousands of controls sharing a handful of cadences and last tests: the unscheduled
    # ones' occurrences are computed per distinct pair, and only the controls that can fall due are read.
    due_by_pair = {(cadence, last): next_due(cadence, last or now, tz) for cadence, last in db.connection().execute(
        sa.select(control.c.cadence, control.c.last_tested_at).where(unscheduled).distinct())}
    cadences = sorted({cadence for (cadence, _), due in due_by_pair.items() if as_utc(due) < as_utc(horizon)})
    rows = db.connection().execute(
        sa.select(control.c.ref, control.c.title, control.c.owner_id, control.c.cadence, control.c.next_due_at,
                  control.c.last_tested_at)
        .where(control.c.active.is_(True),
               sa.or_(control.c.next_due_at < horizon, sa.and_(unscheduled, control.c.cadence.in_(cadences))))
        .order_by(control.c.ref))
    for ref, title, owner_id, cadence, next_due_at, last_tested_at in rows:
        due = as_utc(next_due_at or due_by_pair[(cadence, last_tested_at)])
        if due < as_utc(horizon):
            yield Due(kind="Control test", what=f"{ref} {title}", owner_id=owner_id, due_at=due)
