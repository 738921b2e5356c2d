"""Human steps: one request to one person, answered from a link."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class StepStatus(StrEnum):
    pending = "pending"
    answered = "answered"
    expired = "expired"
    cancelled = "cancelled"


class HumanStep(SQLModel, table=True):
    __tablename__ = "human_step"
    # What each sweep asks, one index each, so a sweep reads the few rows it acts on and never the year of steps
    # behind them. The status comes first and is bound as a parameter; the decided-but-not-handed-back steps
    # are so few that a partial index holds only them.
    __table_args__ = (
        Index("ix_human_step_reminder", "status", "reminded_at", "due_at"),
        Index("ix_human_step_escalation", "status", "escalation_level", "due_at"),
        Index("ix_human_step_expiry", "status", "expires_at"),
        Index("ix_human_step_answered", "answered_at", "status"),  # the report: steps answered in a period
        Index("ix_human_step_resume_pending", "resume_pending", "id", sqlite_where=text("resume_pending = 1"),
              postgresql_where=text("resume_pending")),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, description="Idempotency key: asking twice returns the same step.")
    kind: str = Field(description="approval or form")
    form: str = Field(description="Name of the registered form model the answer must satisfy.")
    title: str
    subject_type: str
    subject_id: int
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    person_id: int = Field(foreign_key="person.id", index=True)
    requested_by_id: int | None = Field(default=None, foreign_key="person.id")
    flow_run_id: str | None = Field(default=None, description="The run that waits for this answer, if any.")
    created_at: datetime = Field(default_factory=utcnow)
    due_at: datetime
    expires_at: datetime
    status: StepStatus = Field(default=StepStatus.pending)
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    answered_by_id: int | None = Field(default=None, foreign_key="person.id")
    answered_at: datetime | None = None
    answer_ip: str | None = None
    answer_user_agent: str | None = None
    escalation_level: int = 0
    escalate_to: list[int] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="Who hears when the step is overdue, besides the person's manager (a drill's wardens).",
    )
    reminded_at: datetime | None = None
    resume_pending: bool = Field(default=False, description="Answer recorded but the waiting run not yet resumed.")


class StepLink(SQLModel, table=True):
    """A capability to answer one step as one person; only the token's SHA-256 is kept."""

    __tablename__ = "step_link"

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="human_step.id", index=True)
    person_id: int = Field(foreign_key="person.id")
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
