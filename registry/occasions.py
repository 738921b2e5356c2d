"""Occasions: what a process opens and closes (an audit for a quarter, a drill, a review period), in one table.

A process keeps its state here (status, phase, report, sign-off), never reads it back from the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class OccasionStatus(StrEnum):
    open = "open"  # opened; nobody asked yet, or a drill running
    collecting = "collecting"  # people are asked; answers come in
    awaiting_signoff = "awaiting_signoff"  # the report is built; the sign-off gate waits
    changes_requested = "changes_requested"  # the sign-off was refused: a new round of the report
    closed = "closed"
    cancelled = "cancelled"


class Occasion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("process", "key", name="uq_occasion_process_key"),)

    id: int | None = Field(default=None, primary_key=True)
    process: str = Field(description="The process's name (compliance-audit).")
    key: str = Field(description="Which occasion of the process: 'ISO 27001 2026-Q3', a drill's key.")
    title: str
    period_start: datetime | None = None
    period_end: datetime | None = None
    status: OccasionStatus = OccasionStatus.open
    phase: str = Field(default="", description="The process's own step within the status, claimed with claim_phase.")
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    report_path: str | None = None
    report_sha256: str | None = None
    signoff_step_id: int | None = Field(default=None, foreign_key="human_step.id")
    signoff_round: int = 0
    flow_run_id: str | None = None
    due_at: datetime | None = Field(
        default=None, description="When the people it asks must have answered: set once (engine.occasions.set_due).")
    parameters: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="The parameters of the run that opened it, as given (a run's parameters hold no secret).")
