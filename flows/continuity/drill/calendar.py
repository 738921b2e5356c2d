"""What the drills put on the calendar: each active programme's next drill, by its cadence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from engine.deadlines import next_due
from engine.processes import Due
from engine.settings import get_settings
from registry import DrillProgram, Facility
from registry.clock import as_utc, utcnow


@dataclass(frozen=True)
class DueDrill:
    program: DrillProgram
    facility: Facility
    occasion: datetime
    """The cadence's occurrence the drill is for."""


def due_drills(db: Session, horizon: datetime) -> Iterator[DueDrill]:
    """Programmes (of active facilities) whose next drill falls before `horizon`, overdue ones too: the cadence's
    first occurrence after the programme last ran, or, never run, its next occurrence from now."""
    tz, now = get_settings().timezone, utcnow()
    for program, facility in db.exec(select(DrillProgram, Facility)
                                     .join(Facility, col(Facility.id) == DrillProgram.facility_id)
                                     .where(col(DrillProgram.active).is_(True), col(Facility.active).is_(True))
                                     .order_by(col(DrillProgram.id))):
        occasion = next_due(program.cadence, as_utc(program.last_run_at) if program.last_run_at else now, tz)
        if occasion <= as_utc(horizon):
            yield DueDrill(program, facility, occasion)


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    for due in due_drills(db, horizon):
        yield Due(kind="Drill", what=f"{due.program.title} ({due.facility.name})", owner_id=None,
                  due_at=due.occasion)
