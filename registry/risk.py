"""The risk register: matrices and their levels as data, categories with an appetite, risks scored on a matrix,
their controls and key risk indicators, the score history, re-scores asked, and acceptances of a residual risk.

A matrix is rows of data, not code: `cells[likelihood - 1][impact - 1]` names the level of a score, and each
level of the matrix has a rank (1 = lowest), a colour and a review cadence. The default 5×5 matrix is seeded by
migration 0012; another matrix is an insert. A risk's scores are 1-based positions on its matrix's axes.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow

DEFAULT_MATRIX = "5x5"
REASONS = ("import", "cadence", "kri", "expired", "ui")
"""Why a risk was (re-)scored: imported, due by its level's cadence, a KRI breach, an expired acceptance, asked
from the UI for one risk or a category."""
BREACH_WHEN = ("above", "below")
DECISIONS = ("accept", "treat")


class Treatment(StrEnum):
    reduce = "reduce"
    accept = "accept"
    avoid = "avoid"
    transfer = "transfer"


class AcceptanceStatus(StrEnum):
    pending = "pending"  # the Director is asked
    accepted = "accepted"  # accepted until accepted_until, for the assessment it names
    treating = "treating"  # the Director asked for a treatment: a corrective action (finding_id) carries it
    voided = "voided"  # the risk was re-scored since: the decision no longer describes it
    expired = "expired"  # accepted_until passed


class RiskMatrix(SQLModel, table=True):
    __tablename__ = "risk_matrix"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    likelihoods: list[str] = Field(sa_column=Column(JSON, nullable=False),
                                   description="The likelihood axis' labels, lowest first (score 1 is the first).")
    impacts: list[str] = Field(sa_column=Column(JSON, nullable=False),
                               description="The impact axis' labels, lowest first.")
    cells: list[list[str]] = Field(sa_column=Column(JSON, nullable=False),
                                   description="cells[likelihood - 1][impact - 1]: the level's name.")
    is_default: bool = Field(default=False, description="The matrix a risk imported without one is scored on.")
    description: str = ""


class RiskLevel(SQLModel, table=True):
    __tablename__ = "risk_level"
    __table_args__ = (UniqueConstraint("matrix_id", "name"), UniqueConstraint("matrix_id", "rank"))

    id: int | None = Field(default=None, primary_key=True)
    matrix_id: int = Field(foreign_key="risk_matrix.id", index=True)
    name: str
    rank: int = Field(description="1 = the lowest level; appetite and moves compare ranks.")
    colour: str = Field(description="'#rrggbb', the level's colour on heat maps and in the register.")
    review_cadence: str = Field(description="When a risk at this level is reviewed, as a cron expression.")


class RiskCategory(SQLModel, table=True):
    __tablename__ = "risk_category"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    appetite: str = Field(description="A level name: the highest residual level accepted without the Director.")
    description: str = ""


class Risk(SQLModel, table=True):
    __table_args__ = (Index("ix_risk_due", "active", "next_review_at"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    title: str
    category_id: int = Field(foreign_key="risk_category.id", index=True)
    owner_id: int = Field(foreign_key="person.id", index=True)
    cause: str = ""
    event: str = ""
    consequence: str = ""
    matrix_id: int = Field(foreign_key="risk_matrix.id")
    inherent_likelihood: int = Field(description="Before any control: 1-based position on the matrix's axis.")
    inherent_impact: int
    residual_likelihood: int = Field(description="With its controls as they are now.")
    residual_impact: int
    treatment: Treatment = Treatment.reduce
    treatment_plan: str = Field(default="", description="What the treatment is, in the owner's words.")
    active: bool = True
    last_reviewed_at: datetime | None = None
    next_review_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class RiskControl(SQLModel, table=True):
    """A control that mitigates a risk (registry.compliance.Control)."""

    __tablename__ = "risk_control"
    __table_args__ = (UniqueConstraint("risk_id", "control_id"),)

    id: int | None = Field(default=None, primary_key=True)
    risk_id: int = Field(foreign_key="risk.id", index=True)
    control_id: int = Field(foreign_key="control.id", index=True)


class RiskIndicator(SQLModel, table=True):
    """A KPI used as a key risk indicator of a risk: a measurement beyond the threshold asks for a re-score."""

    __tablename__ = "risk_indicator"
    __table_args__ = (UniqueConstraint("risk_id", "kpi_id"),)

    id: int | None = Field(default=None, primary_key=True)
    risk_id: int = Field(foreign_key="risk.id", index=True)
    kpi_id: int = Field(foreign_key="kpi_definition.id", index=True)
    threshold: float
    breach_when: str = Field(description="'above' or 'below': which side of the threshold is a breach.")
    last_breach_measurement_id: int | None = Field(
        default=None, foreign_key="kpi_measurement.id",
        description="The newest measurement a re-score was asked for; only newer ones breach again.")


class RiskAssessment(SQLModel, table=True):
    """One scoring of a risk, kept for good: a review's move is a row against the one before it."""

    __tablename__ = "risk_assessment"
    __table_args__ = (Index("ix_risk_assessment_risk", "risk_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    risk_id: int = Field(foreign_key="risk.id")
    inherent_likelihood: int
    inherent_impact: int
    residual_likelihood: int
    residual_impact: int
    inherent_level: str
    residual_level: str
    rationale: str = ""
    reason: str = Field(description="import, cadence, kri, expired or ui (registry.risk.REASONS).")
    step_id: int | None = Field(default=None, foreign_key="human_step.id", unique=True,
                                description="The re-score step it answers: one assessment per answer.")
    assessed_by_id: int | None = Field(default=None, foreign_key="person.id")
    assessed_at: datetime = Field(default_factory=utcnow)
    changed: bool = Field(default=False, description="Whether any score differs from the assessment before it.")


class RiskRescore(SQLModel, table=True):
    """One re-score asked of a risk's owner: by cadence in a review, by a KRI breach, by an expired acceptance."""

    __tablename__ = "risk_rescore"
    # The sweep's catch-up reads the few re-scores answered and not yet applied (no assessment yet).
    __table_args__ = (Index("ix_risk_rescore_unapplied", "assessment_id"),)

    id: int | None = Field(default=None, primary_key=True)
    risk_id: int = Field(foreign_key="risk.id", index=True)
    occasion_id: int | None = Field(default=None, foreign_key="occasion.id", index=True)
    key: str = Field(unique=True, index=True, description="Asking twice for the same thing stores it once.")
    reason: str = Field(description="cadence, kri, expired or ui (registry.risk.REASONS).")
    measurement_id: int | None = Field(default=None, foreign_key="kpi_measurement.id",
                                       description="The KRI measurement that breached, for reason kri.")
    acceptance_id: int | None = Field(default=None, foreign_key="risk_acceptance.id",
                                      description="The acceptance that expired, for reason expired.")
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    assessment_id: int | None = Field(default=None, foreign_key="risk_assessment.id",
                                      description="The assessment its answer made.")
    created_at: datetime = Field(default_factory=utcnow)


class RiskAcceptance(SQLModel, table=True):
    """The Director's decision on a residual risk above appetite, bound to the assessment it was given for."""

    __tablename__ = "risk_acceptance"
    # The second: the sweep's catch-up reads the few acceptances still pending, of every risk.
    __table_args__ = (Index("ix_risk_acceptance_risk_status", "risk_id", "status"),
                      Index("ix_risk_acceptance_status", "status"))

    id: int | None = Field(default=None, primary_key=True)
    risk_id: int = Field(foreign_key="risk.id")
    assessment_id: int = Field(foreign_key="risk_assessment.id", index=True,
                               description="The scored state the decision was asked and given for.")
    key: str | None = Field(default=None, unique=True, description="Asking twice for the same thing stores it once.")
    occasion_id: int | None = Field(default=None, foreign_key="occasion.id", index=True)
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    status: AcceptanceStatus = AcceptanceStatus.pending
    decision: str | None = Field(default=None, description="accept or treat, once decided.")
    accepted_until: date | None = None
    justification: str = ""
    action: str = Field(default="", description="The treatment action named, for decision treat.")
    action_owner_id: int | None = Field(default=None, foreign_key="person.id")
    finding_id: int | None = Field(default=None, foreign_key="finding.id")
    decided_by_id: int | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = None
    voided_at: datetime | None = None
    void_reason: str = ""
    created_at: datetime = Field(default_factory=utcnow)
