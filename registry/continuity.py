"""Continuity: facilities and their rosters, drill programmes, drills, participants, continuity plans."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class RosterRole(StrEnum):
    occupant = "occupant"
    warden = "warden"


class DrillStatus(StrEnum):
    running = "running"
    closed = "closed"


class DrillMeasure(StrEnum):
    """What a drill's recovery time is: everyone accounted for (an evacuation), or the service restored as its
    exercise lead reports (a continuity exercise, such as an IT-outage tabletop)."""

    headcount = "headcount"
    recovery = "recovery"


class AckStatus(StrEnum):
    missing = "missing"
    accounted = "accounted"
    needs_assistance = "needs_assistance"


class Facility(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    address: str = ""
    active: bool = True


class RosterEntry(SQLModel, table=True):
    """Who is at a facility, and who of them is a warden (wardens hear of the missing and of those needing help)."""

    __tablename__ = "roster_entry"
    __table_args__ = (UniqueConstraint("facility_id", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    facility_id: int = Field(foreign_key="facility.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    role: RosterRole = RosterRole.occupant
    area: str = Field("", description="Floor or zone, shown to wardens next to a missing person's name.")


class ContinuityPlan(SQLModel, table=True):
    __tablename__ = "continuity_plan"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    owner_id: int | None = Field(default=None, foreign_key="person.id", nullable=False)
    facility_id: int | None = Field(default=None, foreign_key="facility.id")
    rto_minutes: int = Field(description="Recovery-time objective: how long recovery may take.")
    rpo_minutes: int = Field(description="Recovery-point objective: how much data or work may be lost.")
    review_cadence: str = Field(description="When the plan is reviewed, as a cron expression.")
    version: int = 1
    summary: str = ""
    last_reviewed_at: datetime | None = None
    last_tested_at: datetime | None = None
    active: bool = True


class DrillProgram(SQLModel, table=True):
    """A kind of drill a facility runs on a cadence: a fire evacuation every six months, a yearly IT tabletop."""

    __tablename__ = "drill_program"
    __table_args__ = (UniqueConstraint("facility_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    facility_id: int = Field(foreign_key="facility.id", index=True)
    kind: str
    title: str
    cadence: str = Field(description="When the drill runs, as a cron expression.")
    plan_id: int | None = Field(default=None, foreign_key="continuity_plan.id")
    window_minutes: int = Field(20, ge=1, description="How long participants have to acknowledge.")
    escalate_after_minutes: int = Field(5, ge=1, description="When the still missing are escalated.")
    measure: DrillMeasure = DrillMeasure.headcount
    last_run_at: datetime | None = None
    active: bool = True


class Drill(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, description="facility-kind-start: one drill per occasion.")
    program_id: int | None = Field(default=None, foreign_key="drill_program.id")
    facility_id: int = Field(foreign_key="facility.id", index=True)
    plan_id: int | None = Field(default=None, foreign_key="continuity_plan.id")
    kind: str
    title: str
    scheduled_for: datetime | None = Field(default=None, description="The programme's occurrence this drill is for; "
                                                                     "None for an unscheduled drill.")
    measure: DrillMeasure = DrillMeasure.headcount
    recovery_step_id: int | None = Field(default=None, foreign_key="human_step.id",
                                         description="The exercise lead's recovery report, in a continuity exercise.")
    status: DrillStatus = Field(default=DrillStatus.running, index=True)
    started_at: datetime = Field(default_factory=utcnow)
    escalate_at: datetime
    closes_at: datetime
    closed_at: datetime | None = None
    accounted: int | None = None
    total: int | None = None
    median_seconds: float | None = None
    p90_seconds: float | None = None
    recovery_minutes: float | None = Field(default=None, description="Achieved: minutes until the last person was "
                                                             "accounted for; None when someone never was.")
    data_loss_minutes: float | None = Field(default=None, description="Achieved recovery point: minutes of data or "
                                                                      "work lost, as reported.")
    report_path: str | None = None
    report_sha256: str | None = None
    flow_run_id: str | None = None
    occasion_id: int | None = Field(default=None, foreign_key="occasion.id", index=True)

    @property
    def unscheduled(self) -> bool:
        return self.scheduled_for is None


class DrillParticipant(SQLModel, table=True):
    __tablename__ = "drill_participant"
    __table_args__ = (UniqueConstraint("drill_id", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    drill_id: int = Field(foreign_key="drill.id", index=True)
    person_id: int = Field(foreign_key="person.id")
    role: RosterRole = RosterRole.occupant
    area: str = ""
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    status: AckStatus = AckStatus.missing
    location: str = ""
    acknowledged_at: datetime | None = None
    seconds_to_account: float | None = None
    answered_by_id: int | None = Field(default=None, foreign_key="person.id")
    escalated_at: datetime | None = None
    assistance_alerted_at: datetime | None = None
