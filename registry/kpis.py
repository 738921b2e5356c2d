"""Key performance indicators, their measurements, and the operations reports built from them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class Direction(StrEnum):
    # Not `higher`/`lower`: a member named `lower` would hide str.lower on every Direction value.
    higher_is_better = "higher"
    lower_is_better = "lower"


class KpiDefinition(SQLModel, table=True):
    __tablename__ = "kpi_definition"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    unit: str = Field(description="Shown after every figure: %, h, days, EUR …")
    target: float
    direction: Direction = Field(description="Whether higher or lower than the target is better.")
    owner_id: int | None = Field(default=None, foreign_key="person.id")
    description: str = ""
    active: bool = True


class KpiMeasurement(SQLModel, table=True):
    __tablename__ = "kpi_measurement"
    __table_args__ = (UniqueConstraint("kpi_id", "measured_on"),)

    id: int | None = Field(default=None, primary_key=True)
    kpi_id: int = Field(foreign_key="kpi_definition.id", index=True)
    measured_on: date = Field(index=True, description="The day the figure describes (a week's or month's end).")
    value: float
    note: str = ""
    recorded_at: datetime = Field(default_factory=utcnow)


class OperationsReport(SQLModel, table=True):
    """One report per period, kept so a re-run replaces files but never mails the list twice."""

    __tablename__ = "operations_report"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, description="weekly-2026-W47, monthly-2026-11, custom-…")
    period_start: date
    period_end: date
    generated_at: datetime = Field(default_factory=utcnow)
    html_path: str
    pdf_path: str
    csv_path: str
    pdf_sha256: str
