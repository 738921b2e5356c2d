"""Findings and their corrective actions, shared by every process that finds something wrong.

A finding points at what it was found on through one origin reference (`origin_type`, `origin_id`: a control
test, a drill, a vendor review, a plan review) and a `code` that tells apart the findings of one origin (a
drill finds "missing" and "rto"): the three together are unique, so raising the same finding twice stores it once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow
from registry.compliance import Criticality


class FindingStatus(StrEnum):
    open = "open"
    closed = "closed"  # every corrective action of it verified effective


class ActionStatus(StrEnum):
    open = "open"  # the owner is asked to do it and report it done
    done = "done"  # reported done, awaiting verification
    verified = "verified"  # the verifier confirmed it worked
    reopened = "reopened"  # the verifier sent it back: the owner is asked again, in a new round


class Finding(SQLModel, table=True):
    """Something found wrong: a failed control test, a drill that missed its target, a vendor below standard."""

    __table_args__ = (UniqueConstraint("origin_type", "origin_id", "code", name="uq_finding_origin"),
                      Index("ix_finding_status", "status"))

    id: int | None = Field(default=None, primary_key=True)
    origin_type: str = Field(description="What it was found on: control_test, drill, vendor_review, plan_review…")
    origin_id: int
    code: str = Field(description="Which finding of its origin this is; unique with the origin.")
    occasion_id: int | None = Field(default=None, foreign_key="occasion.id", index=True)
    process: str = Field(description="The process that raised it, as it names itself (compliance-audit).")
    severity: Criticality
    description: str
    status: FindingStatus = FindingStatus.open
    verifier_id: int | None = Field(default=None, foreign_key="person.id",
                                    description="Who confirms its corrective actions worked.")
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class CorrectiveAction(SQLModel, table=True):
    """What the owner does about a finding, reported done from a link and verified by someone else; a send-back
    starts a new round on the same row."""

    __tablename__ = "corrective_action"
    __table_args__ = (Index("ix_corrective_action_status", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    finding_id: int = Field(foreign_key="finding.id", unique=True)
    owner_id: int = Field(foreign_key="person.id")
    description: str
    due_at: datetime
    status: ActionStatus = ActionStatus.open
    round: int = Field(default=1, description="1 at first; one more each time the verifier sends it back.")
    step_id: int | None = Field(default=None, foreign_key="human_step.id",
                                description="The owner's current action_done step.")
    done_note: str = Field(default="", description="What the owner says was done.")
    evidence_url: str | None = None
    evidence_filename: str | None = None
    evidence_sha256: str | None = None
    evidence_path: str | None = None
    done_at: datetime | None = None
    verify_step_id: int | None = Field(default=None, foreign_key="human_step.id",
                                       description="The verifier's current action_verification step.")
    verified_by_id: int | None = Field(default=None, foreign_key="person.id")
    verified_at: datetime | None = None
    verification_comment: str = Field(default="", description="The verifier's last comment (why it was sent back).")
    created_at: datetime = Field(default_factory=utcnow)
