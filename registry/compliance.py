"""Compliance: frameworks, controls, audits per period, control tests, evidence (findings: registry.findings)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class Criticality(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class TestResult(StrEnum):
    __test__ = False  # not a pytest class, despite the name

    passed = "pass"
    failed = "fail"
    unanswered = "unanswered"


class Framework(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    compliance_manager_id: int | None = Field(default=None, foreign_key="person.id")


class Control(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("framework_id", "ref"),)

    id: int | None = Field(default=None, primary_key=True)
    framework_id: int = Field(foreign_key="framework.id", index=True)
    ref: str
    title: str
    description: str = ""
    owner_id: int | None = Field(default=None, foreign_key="person.id", nullable=False)
    cadence: str = Field(description="When the control is tested, as a cron expression.")
    criticality: Criticality = Criticality.medium
    last_tested_at: datetime | None = None
    next_due_at: datetime | None = None
    active: bool = True


class Audit(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("framework_id", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    framework_id: int = Field(foreign_key="framework.id")
    period: str
    evidence_due_at: datetime
    occasion_id: int | None = Field(default=None, foreign_key="occasion.id", index=True)


class ControlTest(SQLModel, table=True):
    __tablename__ = "control_test"
    __table_args__ = (UniqueConstraint("audit_id", "control_id"),)

    id: int | None = Field(default=None, primary_key=True)
    audit_id: int = Field(foreign_key="audit.id", index=True)
    control_id: int = Field(foreign_key="control.id")
    owner_id: int = Field(foreign_key="person.id")
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    result: TestResult | None = None
    note: str = ""
    tested_at: datetime | None = None


class Evidence(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    control_test_id: int = Field(foreign_key="control_test.id", index=True)
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    stored_path: str | None = None
    submitted_by_id: int = Field(foreign_key="person.id")
    submitted_at: datetime = Field(default_factory=utcnow)
